//! Perceptual colour maps as 256-entry lookup tables, the value scales that map attention and
//! rollout values onto them, and the ticks of their colour bars.
//!
//! Values are turned into 8-bit *levels* once, when a block is prepared; frames only look
//! levels up. Level 0 is reserved for "exactly zero" (no attention at all: outside a window or
//! masked), so a value that merely rounds down to the bottom of the scale still differs from
//! a structural zero in the data, even if both look dark on screen.

use std::fmt;

use serde::Deserialize;

use super::canvas::Rgb;

/// A named colour map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    /// Matplotlib's viridis (blue–green–yellow).
    Viridis,
    /// Matplotlib's magma (black–purple–orange–white).
    Magma,
    /// Matplotlib's inferno (black–purple–orange–yellow).
    Inferno,
    /// Matplotlib's plasma (blue–purple–yellow).
    Plasma,
    /// Cividis, readable with colour-vision deficiencies.
    Cividis,
    /// Google's turbo (rainbow-like, perceptually smoother than jet).
    Turbo,
    /// Black to white.
    Greys,
}

impl Colormap {
    /// The map as 256 colours from low to high.
    pub fn lut(self) -> Lut {
        let gradient = match self {
            Colormap::Viridis => colorous::VIRIDIS,
            Colormap::Magma => colorous::MAGMA,
            Colormap::Inferno => colorous::INFERNO,
            Colormap::Plasma => colorous::PLASMA,
            Colormap::Cividis => colorous::CIVIDIS,
            Colormap::Turbo => colorous::TURBO,
            Colormap::Greys => colorous::GREYS,
        };
        let mut colors = [Rgb::BLACK; 256];
        for (i, c) in colors.iter_mut().enumerate() {
            // colorous' greys run white → black; every other map runs dark → bright.
            let t = if self == Colormap::Greys {
                1.0 - i as f64 / 255.0
            } else {
                i as f64 / 255.0
            };
            let v = gradient.eval_continuous(t);
            *c = Rgb([v.r, v.g, v.b]);
        }
        Lut(colors)
    }
}

/// 256 colours indexed by level.
#[derive(Clone, PartialEq, Eq)]
pub struct Lut(pub [Rgb; 256]);

impl fmt::Debug for Lut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lut({} … {})", self.0[0].hex(), self.0[255].hex())
    }
}

impl Lut {
    /// The colour of a level.
    #[inline]
    pub fn get(&self, level: u8) -> Rgb {
        self.0[level as usize]
    }

    /// The colour at `t` in [0, 1].
    pub fn at(&self, t: f32) -> Rgb {
        self.0[(t.clamp(0.0, 1.0) * 255.0).round() as usize]
    }
}

/// How values are spread over the colour map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Linear between the range's ends.
    Linear,
    /// `(v / max)^gamma`: gamma < 1 lifts small values.
    Gamma(f32),
    /// Logarithmic over `decades` powers of ten below the maximum.
    Log {
        /// How many decades below the maximum reach the bottom of the map.
        decades: f32,
    },
}

/// A value range on a scale: turns values into positions on the colour map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// The scale.
    pub scale: Scale,
    /// Value at the bottom of the map (ignored by gamma and log, which start at 0).
    pub lo: f32,
    /// Value at the top of the map.
    pub hi: f32,
}

impl Norm {
    /// Position of `v` on the map, in [0, 1].
    pub fn t(&self, v: f32) -> f32 {
        let hi = if self.hi > 0.0 { self.hi } else { 1.0 };
        let t = match self.scale {
            Scale::Linear => {
                let span = self.hi - self.lo;
                if span > 0.0 {
                    (v - self.lo) / span
                } else {
                    0.5
                }
            }
            Scale::Gamma(g) => (v.max(0.0) / hi).powf(g),
            Scale::Log { decades } => {
                if v <= 0.0 {
                    0.0
                } else {
                    1.0 + (v / hi).log10() / decades.max(1e-3)
                }
            }
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The level of `v`: 0 only for values that are exactly zero (or negative), else 1–255.
    pub fn level(&self, v: f32) -> u8 {
        if v <= 0.0 && !matches!(self.scale, Scale::Linear) {
            return 0;
        }
        1 + (self.t(v) * 254.0).round() as u8
    }

    /// Ticks for a colour bar: positions in [0, 1] with their labels, at most about `max`.
    pub fn ticks(&self, max: usize) -> Vec<(f32, String)> {
        let max = max.max(2);
        match self.scale {
            Scale::Linear => self.labelled(nice_ticks(self.lo, self.hi, max)),
            Scale::Gamma(_) => self.labelled(nice_ticks(0.0, self.hi, max)),
            Scale::Log { decades } => {
                let hi = f64::from(self.hi.max(f32::MIN_POSITIVE));
                let lo = hi * 10f64.powf(-f64::from(decades));
                let mut out = Vec::new();
                let mut k = lo.log10().ceil() as i32;
                while 10f64.powi(k) <= hi * (1.0 + 1e-6) {
                    let v = 10f64.powi(k) as f32;
                    out.push((self.t(v), power_of_ten(k)));
                    k += 1;
                }
                // Thin out decades when there are too many for the bar.
                while out.len() > max {
                    out = out.into_iter().step_by(2).collect();
                }
                out
            }
        }
    }
}

impl Norm {
    fn labelled(&self, values: Vec<f32>) -> Vec<(f32, String)> {
        let labels = tick_labels(&values);
        values.iter().map(|&v| self.t(v)).zip(labels).collect()
    }
}

/// Labels for ticks in increasing order: [`format_number`]'s, unless two of them read the
/// same (a narrow range such as 0.995–1.005, where three significant digits print "1" twice);
/// then every label gets the decimals the step between ticks needs.
pub fn tick_labels(values: &[f32]) -> Vec<String> {
    let labels: Vec<String> = values.iter().map(|&v| format_number(v)).collect();
    if labels.windows(2).all(|w| w[0] != w[1]) {
        return labels;
    }
    let step = values
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(f32::INFINITY, f32::min);
    let decimals = (1 - step.log10().floor() as i32).clamp(0, 8) as usize;
    values
        .iter()
        .map(|v| {
            let s = format!("{v:.decimals$}");
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        })
        .collect()
}

/// Round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi], at most about `max`.
pub fn nice_ticks(lo: f32, hi: f32, max: usize) -> Vec<f32> {
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return vec![lo as f32];
    }
    let raw = (hi - lo) / (max.max(2) - 1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    loop {
        let first = (lo / step - 1e-9).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        // A bar needs two labels to be read; a narrow range gets a finer step.
        if last - first >= 1 || step < (hi - lo) * 1e-3 {
            return (first..=last).map(|i| (i as f64 * step) as f32).collect();
        }
        // Next finer step in the 1–2–5 sequence.
        let lead = step / 10f64.powf(step.log10().floor());
        step /= if (lead - 5.0).abs() < 0.1 { 2.5 } else { 2.0 };
    }
}

/// A short label for a value: up to three significant digits, no trailing zeros.
pub fn format_number(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let k = a.log10().floor() as i32;
        let m = v / 10f32.powi(k);
        return if (m - m.round()).abs() < 1e-3 {
            format!("{}{}", m.round(), exponent(k))
        } else {
            format!("{m:.1}{}", exponent(k))
        };
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 4) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn exponent(k: i32) -> String {
    format!("×{}", power_of_ten(k))
}

/// "10⁻³" and the like; plain digits for 10⁰ … 10³.
pub fn power_of_ten(k: i32) -> String {
    match k {
        0 => "1".into(),
        1 => "10".into(),
        2 => "100".into(),
        -1 => "0.1".into(),
        -2 => "0.01".into(),
        _ => {
            let sup: String = k
                .to_string()
                .chars()
                .map(|c| match c {
                    '-' => '⁻',
                    '0' => '⁰',
                    '1' => '¹',
                    '2' => '²',
                    '3' => '³',
                    '4' => '⁴',
                    '5' => '⁵',
                    '6' => '⁶',
                    '7' => '⁷',
                    '8' => '⁸',
                    _ => '⁹',
                })
                .collect();
            format!("10{sup}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_keeps_its_own_level() {
        let n = Norm {
            scale: Scale::Log { decades: 3.0 },
            lo: 0.0,
            hi: 0.5,
        };
        assert_eq!(n.level(0.0), 0);
        assert_eq!(n.level(1e-9), 1);
        assert_eq!(n.level(0.5), 255);
        let g = Norm {
            scale: Scale::Gamma(0.5),
            ..n
        };
        assert_eq!(g.level(0.0), 0);
        assert_eq!(g.level(0.125), 1 + (0.5f32 * 254.0).round() as u8);
    }

    #[test]
    fn narrow_ranges_get_distinct_labels() {
        let values = nice_ticks(0.9962, 1.0041, 4);
        let labels = tick_labels(&values);
        assert!(labels.windows(2).all(|w| w[0] != w[1]), "{labels:?}");
        assert_eq!(tick_labels(&[0.995, 1.0, 1.005]), ["0.995", "1", "1.005"]);
        // Labels that already differ stay as they were.
        assert_eq!(tick_labels(&[1.0, 2.0, 3.0]), ["1", "2", "3"]);
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(nice_ticks(0.83, 1.41, 4), vec![1.0, 1.2, 1.4]);
        assert!(nice_ticks(0.985, 1.015, 4).len() >= 2);
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1.4000001), "1.4");
        assert_eq!(format_number(12.0), "12");
        assert_eq!(power_of_ten(-3), "10⁻³");
        let log = Norm {
            scale: Scale::Log { decades: 3.0 },
            lo: 0.0,
            hi: 1.0,
        };
        let labels: Vec<String> = log.ticks(6).into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["10⁻³", "0.01", "0.1", "1"]);
    }

    #[test]
    fn luts_run_dark_to_bright() {
        for m in [Colormap::Magma, Colormap::Viridis, Colormap::Greys] {
            let lut = m.lut();
            let lum = |c: Rgb| c.0.iter().map(|&v| u32::from(v)).sum::<u32>();
            assert!(lum(lut.get(0)) < lum(lut.get(255)), "{m:?}");
        }
    }
}
