//! Splitting a folder's work across machines: shard I of N takes the inputs whose position in
//! sorted order is I modulo N, so N processes (a Slurm job array, a Kubernetes Indexed Job)
//! render disjoint parts whose union is the whole folder, with no coordination between them.

use std::fmt;

use crate::error::{Error, Result};

/// One of `count` disjoint parts; `index` counts from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

/// How a shard is chosen: given outright (`I/N`), or read from the job scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    /// `I/N`.
    Fixed(Shard),
    /// `auto`: from a Slurm job array or a Kubernetes Indexed Job (see [`Shard::from_env`]).
    Auto,
}

impl std::str::FromStr for ShardSpec {
    type Err = Error;

    /// Parses `I/N` (0 ≤ I < N) or `auto`.
    fn from_str(s: &str) -> Result<ShardSpec> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ShardSpec::Auto);
        }
        let bad = || {
            Error::InvalidArgument(format!(
                "--shard {s}: expected I/N with 0 ≤ I < N (e.g. 0/4 … 3/4), or auto"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).map(ShardSpec::Fixed)
    }
}

impl Shard {
    /// The whole: one part.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Part `index` (from 0) of `count`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `count ≥ 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(Error::InvalidArgument(
                "--shard I/N: N must be at least 1".into(),
            ));
        }
        if index >= count {
            return Err(Error::InvalidArgument(format!(
                "--shard {index}/{count}: I counts from 0 and must be below N (0/{count} … {}/{count})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Which part, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many parts.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the item at `position` (in sorted order) belongs to this part.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// The items of this part, in their order; `items` must already be sorted the same way in
    /// every shard.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, t)| t)
            .collect()
    }

    /// Resolves `spec`: a fixed shard as it is, `auto` from the environment `var` reads (see
    /// [`Shard::from_env`]); `count` is `--shard-count`.
    ///
    /// # Errors
    /// As [`Shard::from_env`]; [`Error::InvalidArgument`] for a `count` with a fixed shard.
    pub fn resolve(
        spec: ShardSpec,
        count: Option<usize>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard> {
        match (spec, count) {
            (ShardSpec::Fixed(_), Some(_)) => Err(Error::InvalidArgument(
                "--shard-count goes with --shard auto; --shard I/N already says N".into(),
            )),
            (ShardSpec::Fixed(s), None) => Ok(s),
            (ShardSpec::Auto, count) => Shard::from_env(count, var),
        }
    }

    /// The shard a job scheduler gives this process, read through `var` (e.g.
    /// `|k| std::env::var(k).ok()`):
    ///
    /// - a Slurm job array: `SLURM_ARRAY_TASK_ID` relative to `SLURM_ARRAY_TASK_MIN` (and
    ///   `SLURM_ARRAY_TASK_STEP`), of `SLURM_ARRAY_TASK_COUNT` or the tasks from `_MIN` to
    ///   `_MAX` — so `--array=0-15` and `--array=1-16` both give 16 shards;
    /// - a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` (from 0) of `count`
    ///   (`--shard-count`, the Job's `completions`), which Kubernetes does not export.
    ///
    /// `count`, where given with Slurm, must agree with the array.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], one line naming the variable, when none of them is set, a
    /// value is not a number, the array is not a contiguous range, or the index is out of range.
    pub fn from_env(count: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let number = |key: &str| -> Result<Option<usize>> {
            match var(key) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "--shard auto: {key}={v:?} is not a non-negative whole number"
                    ))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            return slurm(id, count, &number);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "--shard auto: JOB_COMPLETION_INDEX is {index} but the number of shards is \
                     unknown; pass --shard-count with the Job's completions"
                ))
            })?;
            return Shard::new(index, count).map_err(|_| {
                Error::InvalidArgument(format!(
                    "--shard auto: JOB_COMPLETION_INDEX is {index}, not below --shard-count \
                     {count}; make --shard-count the Job's completions"
                ))
            });
        }
        Err(Error::InvalidArgument(
            "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor \
             JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; run it as an array task \
             or pass --shard I/N"
                .into(),
        ))
    }
}

fn slurm(
    id: usize,
    count: Option<usize>,
    number: &dyn Fn(&str) -> Result<Option<usize>>,
) -> Result<Shard> {
    let bad = |what: String| Err(Error::InvalidArgument(format!("--shard auto: {what}")));
    let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
    let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
    if step == 0 {
        return bad("SLURM_ARRAY_TASK_STEP is 0".into());
    }
    if id < min || !(id - min).is_multiple_of(step) {
        return bad(format!(
            "SLURM_ARRAY_TASK_ID {id} is not in the array's range from {min} in steps of {step}"
        ));
    }
    let spanned = match number("SLURM_ARRAY_TASK_MAX")? {
        Some(max) if max < id => {
            return bad(format!(
                "SLURM_ARRAY_TASK_ID {id} lies above SLURM_ARRAY_TASK_MAX {max}"
            ))
        }
        Some(max) => Some((max - min) / step + 1),
        None => None,
    };
    let tasks = number("SLURM_ARRAY_TASK_COUNT")?;
    let n = match (spanned, tasks) {
        (Some(a), Some(b)) if a != b => {
            return bad(format!(
                "SLURM_ARRAY_TASK_COUNT is {b} but the array from SLURM_ARRAY_TASK_MIN to _MAX \
                 holds {a} tasks; use a contiguous range such as --array=0-{}",
                b.saturating_sub(1)
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            return bad(
                "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor \
                 SLURM_ARRAY_TASK_MAX is; run it as a Slurm array task (sbatch --array) or pass \
                 --shard I/N"
                    .into(),
            )
        }
    };
    if let Some(c) = count.filter(|&c| c != n) {
        return bad(format!(
            "--shard-count {c} disagrees with the Slurm array's {n} tasks; leave it out under Slurm"
        ));
    }
    let index = (id - min) / step;
    Shard::new(index, n).map_err(|_| {
        Error::InvalidArgument(format!(
            "--shard auto: SLURM_ARRAY_TASK_ID {id} is task {index} of an array of {n}; \
             SLURM_ARRAY_TASK_COUNT must count every task"
        ))
    })
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn err(r: Result<Shard>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn parts_are_disjoint_and_cover_everything() {
        let items: Vec<usize> = (0..23).collect();
        for n in 1..6 {
            let mut all: Vec<usize> = (0..n)
                .flat_map(|i| Shard::new(i, n).unwrap().select(items.clone()))
                .collect();
            all.sort();
            assert_eq!(all, items, "{n} shards");
        }
        assert_eq!(
            Shard::new(1, 3).unwrap().select(items),
            [1, 4, 7, 10, 13, 16, 19, 22]
        );
    }

    #[test]
    fn specs_parse_and_validate() {
        assert_eq!(
            "2/4".parse::<ShardSpec>().unwrap(),
            ShardSpec::Fixed(Shard::new(2, 4).unwrap())
        );
        assert_eq!(" auto ".parse::<ShardSpec>().unwrap(), ShardSpec::Auto);
        for bad in ["4/4", "0/0", "1", "a/b", "-1/3", "1/2/3", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        assert!(err(Shard::new(4, 4)).contains("0/4 … 3/4"));
        let fixed = ShardSpec::Fixed(Shard::ALL);
        assert!(err(Shard::resolve(fixed, Some(3), env(&[]))).contains("--shard auto"));
    }

    #[test]
    fn slurm_arrays_from_zero_or_one_with_count_or_max() {
        let s = Shard::from_env(
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]),
        );
        assert_eq!(s.unwrap(), Shard::new(3, 4).unwrap());
        let one_based = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "16"),
            ("SLURM_ARRAY_TASK_COUNT", "16"),
        ]);
        assert_eq!(
            Shard::from_env(None, one_based).unwrap(),
            Shard::new(0, 16).unwrap()
        );
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(
            Shard::from_env(Some(5), stepped).unwrap(),
            Shard::new(3, 5).unwrap()
        );
    }

    #[test]
    fn kubernetes_indexed_jobs_need_the_count() {
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::from_env(Some(3), &k8s).unwrap(),
            Shard::new(2, 3).unwrap()
        );
        assert!(err(Shard::from_env(None, &k8s)).contains("--shard-count"));
        assert!(err(Shard::from_env(Some(2), &k8s)).contains("not below --shard-count 2"));
    }

    #[test]
    fn missing_or_garbled_variables_are_one_clear_line() {
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[], "neither SLURM_ARRAY_TASK_ID"),
            (
                &[("SLURM_ARRAY_TASK_ID", "x1")],
                "SLURM_ARRAY_TASK_ID=\"x1\"",
            ),
            (
                &[("SLURM_ARRAY_TASK_ID", "1")],
                "neither SLURM_ARRAY_TASK_COUNT",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "5"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                ],
                "task 5 of an array of 4",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "1"),
                    ("SLURM_ARRAY_TASK_MAX", "9"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                ],
                "contiguous range",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "-1")],
                "JOB_COMPLETION_INDEX=\"-1\"",
            ),
        ];
        for (vars, needle) in cases {
            let e = err(Shard::from_env(None, env(vars)));
            assert!(e.contains(needle), "{vars:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
