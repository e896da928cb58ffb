//! The timeline: a pure mapping from frame index to what the frame shows.
//!
//! A story is a row of beats — intro, one beat per block with a merge beat before each new
//! stage, finale — and each beat lasts `round(seconds · fps)` frames (a beat of 0 frames is left
//! out). Inside a beat, [`Moment`] gives the progress of every animation as a number in [0, 1],
//! so drawing a frame needs nothing but its index.

use super::template::{Mode, Timing};
use crate::geometry::Geometry;

/// One part of the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The opening: title, image, prediction.
    Intro,
    /// Block `k` of the trace (forward order): its matrix fills, its rollout fades in.
    Block(usize),
    /// Patch merging between block `from` (last of a stage) and block `to` (first of the next).
    Merge {
        /// Last block of the stage being merged.
        from: usize,
        /// First block of the next stage.
        to: usize,
    },
    /// The closing figure.
    Finale,
}

/// A beat and the frames it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// What is shown.
    pub beat: Beat,
    /// First frame.
    pub start: usize,
    /// Number of frames (≥ 1).
    pub frames: usize,
}

/// What one frame shows: its beat and how far each animation has gone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// The frame index.
    pub frame: usize,
    /// The beat it belongs to.
    pub beat: Beat,
    /// Seconds since the beat began.
    pub local: f64,
    /// Share of the beat gone by, in (0, 1] (1 on its last frame).
    pub progress: f64,
    /// Share of the block's matrix filled, in [0, 1] (query by query, in window order).
    pub fill: f64,
    /// Window-order → token-order move, in [0, 1] (0 until the fill is done), eased.
    pub reorder: f64,
    /// Weight of this block's rollout against the previous one's, in [0, 1].
    pub crossfade: f64,
    /// Finale fade-in, in [0, 1].
    pub fade: f64,
}

/// The whole video's beats.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    segments: Vec<Segment>,
    fps: u32,
    timing: Timing,
    frames: usize,
}

impl Timeline {
    /// Seconds that the block and merge beats over blocks with `geometries` last under
    /// `timing` (before `max_duration` shortens them).
    pub fn body_seconds(timing: &Timing, geometries: &[Geometry]) -> f64 {
        let merges = geometries
            .windows(2)
            .filter(|p| p[0].stage != p[1].stage)
            .count();
        geometries.len() as f64 * timing.block + merges as f64 * timing.merge
    }

    /// The timeline of a template's `timing` at `fps` over blocks with `geometries`.
    ///
    /// In figure mode it is one frame. With `timing.max_duration` set and exceeded, block and
    /// merge beats are shortened by one factor so that the whole fits.
    pub fn new(timing: &Timing, fps: u32, geometries: &[Geometry], mode: Mode) -> Timeline {
        let fps = fps.max(1);
        let mut timing = *timing;
        if mode.is_still() {
            let finale = Segment {
                beat: Beat::Finale,
                start: 0,
                frames: 1,
            };
            return Timeline {
                segments: vec![finale],
                fps,
                timing,
                frames: 1,
            };
        }
        let body = Timeline::body_seconds(&timing, geometries);
        let mut scaled = false;
        if timing.max_duration > 0.0 && timing.intro + body + timing.finale > timing.max_duration {
            let factor = ((timing.max_duration - timing.intro - timing.finale) / body).max(0.0);
            timing.block *= factor;
            timing.merge *= factor;
            scaled = true;
        }
        let frames_of = |seconds: f64, shortened: bool| {
            let exact = seconds * f64::from(fps);
            // Shortened beats round down so that rounding cannot push past max_duration.
            (if shortened {
                (exact + 1e-9).floor()
            } else {
                exact.round()
            }) as usize
        };
        let mut beats = vec![(Beat::Intro, frames_of(timing.intro, false))];
        for (k, g) in geometries.iter().enumerate() {
            if k > 0 && geometries[k - 1].stage != g.stage {
                beats.push((
                    Beat::Merge { from: k - 1, to: k },
                    frames_of(timing.merge, scaled),
                ));
            }
            // A block always gets a frame, however short: every block is shown.
            beats.push((Beat::Block(k), frames_of(timing.block, scaled).max(1)));
        }
        let finale = frames_of(timing.finale, false);
        // A video always has a frame: with nothing else to show, the finale gets one.
        let empty = beats.iter().all(|b| b.1 == 0);
        beats.push((Beat::Finale, if empty { finale.max(1) } else { finale }));
        let mut segments = Vec::new();
        let mut start = 0;
        for (beat, frames) in beats {
            if frames > 0 {
                segments.push(Segment {
                    beat,
                    start,
                    frames,
                });
                start += frames;
            }
        }
        let frames = segments.iter().map(|s| s.frames).sum();
        Timeline {
            segments,
            fps,
            timing,
            frames,
        }
    }

    /// Total number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.frames as f64 / f64::from(self.fps)
    }

    /// The beats in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The timing after any shortening for `max_duration`.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The frame showing time `seconds` (clamped to the video).
    pub fn frame_at(&self, seconds: f64) -> usize {
        let f = (seconds.max(0.0) * f64::from(self.fps) + 1e-9).floor() as usize;
        f.min(self.frames.saturating_sub(1))
    }

    /// The first segment whose beat is `beat`, if any.
    pub fn find(&self, beat: Beat) -> Option<&Segment> {
        self.segments.iter().find(|s| s.beat == beat)
    }

    /// What frame `frame` shows (clamped to the last frame).
    pub fn moment(&self, frame: usize) -> Moment {
        let frame = frame.min(self.frames.saturating_sub(1));
        let i = self
            .segments
            .partition_point(|s| s.start + s.frames <= frame)
            .min(self.segments.len() - 1);
        let seg = self.segments[i];
        let fps = f64::from(self.fps);
        let step = 1.0 / fps;
        let n = frame - seg.start;
        let local = n as f64 / fps;
        let duration = seg.frames as f64 / fps;
        // Animations are sampled at the end of each frame's interval, so the last frame of an
        // animation shows it complete.
        let ramp = |start: f64, length: f64| {
            if length <= 0.0 {
                if local + step > start {
                    1.0
                } else {
                    0.0
                }
            } else {
                ((local + step - start) / length).clamp(0.0, 1.0)
            }
        };
        let mut m = Moment {
            frame,
            beat: seg.beat,
            local,
            progress: (n + 1) as f64 / seg.frames as f64,
            fill: 1.0,
            reorder: 1.0,
            crossfade: 1.0,
            fade: 1.0,
        };
        match seg.beat {
            Beat::Block(_) => {
                let fill = self.timing.fill * duration;
                m.fill = ramp(0.0, fill);
                // A short pause on the full block-diagonal matrix before it moves.
                let rest = (duration - fill).max(0.0);
                let hold = (rest * 0.2).min(0.4);
                let length = self.timing.reorder.min((rest - hold).max(0.0));
                m.reorder = smoothstep(if m.fill < 1.0 {
                    0.0
                } else {
                    ramp(fill + hold, length)
                });
                m.crossfade = smoothstep(ramp(0.0, self.timing.crossfade.min(duration)));
            }
            Beat::Merge { .. } => m.reorder = 1.0,
            Beat::Finale => m.fade = smoothstep(ramp(0.0, self.timing.fade.min(duration))),
            Beat::Intro => {}
        }
        m
    }
}

/// Ease in and out: 3t² − 2t³.
pub fn smoothstep(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            intro: 1.0,
            block: 2.0,
            merge: 0.5,
            finale: 1.0,
            fill: 0.5,
            reorder: 0.5,
            crossfade: 0.5,
            fade: 0.5,
            max_duration: 0.0,
        }
    }

    fn geometries() -> Vec<Geometry> {
        vec![
            Geometry::new(0, 0, 8, 8, 4, 0),
            Geometry::new(0, 1, 8, 8, 4, 2),
            Geometry::new(1, 0, 4, 4, 4, 0),
        ]
    }

    #[test]
    fn beats_follow_the_timing() {
        let t = Timeline::new(&timing(), 10, &geometries(), Mode::Story);
        let beats: Vec<(Beat, usize)> = t.segments().iter().map(|s| (s.beat, s.frames)).collect();
        assert_eq!(
            beats,
            vec![
                (Beat::Intro, 10),
                (Beat::Block(0), 20),
                (Beat::Block(1), 20),
                (Beat::Merge { from: 1, to: 2 }, 5),
                (Beat::Block(2), 20),
                (Beat::Finale, 10),
            ]
        );
        assert_eq!(t.frame_count(), 85);
        let m = t.moment(10);
        assert_eq!(m.beat, Beat::Block(0));
        assert!(m.fill > 0.0 && m.fill < 0.2 && m.reorder == 0.0);
        assert_eq!(t.moment(19).fill, 1.0);
        assert_eq!(t.moment(29).reorder, 1.0);
        assert_eq!(t.moment(1000).beat, Beat::Finale);
    }

    #[test]
    fn max_duration_shortens_blocks_and_merges() {
        let mut tm = timing();
        tm.max_duration = 4.0;
        let t = Timeline::new(&tm, 10, &geometries(), Mode::Story);
        assert!(t.frame_count() <= 40, "{}", t.frame_count());
        assert_eq!(t.find(Beat::Intro).map(|s| s.frames), Some(10));
    }

    #[test]
    fn figure_mode_is_one_frame() {
        let t = Timeline::new(&timing(), 30, &geometries(), Mode::Figure);
        assert_eq!(t.frame_count(), 1);
        assert_eq!(t.moment(0).beat, Beat::Finale);
    }
}
