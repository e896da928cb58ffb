//! The checks across keys and sections — a panel's place against the canvas, the scale's
//! parameter, the window against the grid, the time limit against the beats — and the
//! [`Template`] they leave.

use super::diagnostics::Cx;
use super::spec::{CompareSpec, Document, ScaleKind, OFF};
use super::{Mode, Template};
use crate::error::Result;
use crate::render::canvas::Rect;

impl Document {
    pub(super) fn resolve(self, cx: &Cx) -> Result<Template> {
        let (width, height, fps) = (self.canvas.width, self.canvas.height, self.canvas.fps);
        for (x, key) in [(width, "width"), (height, "height")] {
            let span = cx.span("canvas", None, key);
            if !(16..=8192).contains(&x) {
                return Err(cx.err(&span, format!("{key} = {x} must lie in [16, 8192]")));
            }
            if !x.is_multiple_of(2) {
                return Err(cx.err(
                    &span,
                    format!("{key} = {x} is odd; H.264 video needs even frame sizes"),
                ));
            }
        }
        if !(1..=240).contains(&fps) {
            let span = cx.span("canvas", None, "fps");
            return Err(cx.err(&span, format!("fps = {fps} must lie in [1, 240]")));
        }
        let timing = self.timing;
        if matches!(self.mode, Mode::Story | Mode::Compare) && timing.block <= 0.0 {
            return Err(cx.err(
                &cx.span("timing", None, "block"),
                "block must be above 0 seconds",
            ));
        }
        if timing.max_duration > 0.0 && timing.intro + timing.finale >= timing.max_duration {
            return Err(cx.err(
                &cx.span("timing", None, "max_duration"),
                format!(
                    "max_duration = {} leaves no time for the blocks after intro ({}) and \
                     finale ({})",
                    timing.max_duration, timing.intro, timing.finale
                ),
            ));
        }
        if self.colors.regions.is_empty() {
            return Err(cx.whole("[colors] regions needs at least one colour"));
        }

        let canvas = (width as i32, height as i32);
        let compare = self.compare_boxes(cx, canvas)?;
        // In a compare template, panels go inside each model's box: they must fit the smaller.
        let (room, what) = match &compare {
            Some(c) => (
                (c.left.w.min(c.right.w), c.left.h.min(c.right.h)),
                "box of [compare] (the smaller of left and right)",
            ),
            None => (canvas, "canvas"),
        };
        // A panel is shown where it is placed, and then it must fit.
        let placed = |table: &str, place: Rect| -> Result<bool> {
            if place == OFF {
                return Ok(false);
            }
            fits(cx, (table, "place"), place, room, what)?;
            Ok(true)
        };
        let image = placed("image", self.image.place)?.then_some(self.image);
        let matrix = placed("matrix", self.matrix.place)?.then_some(self.matrix);
        let rollout = placed("rollout", self.rollout.place)?.then_some(self.rollout);
        let naive = placed("naive", self.naive.place)?.then_some(self.naive);
        let figure = placed("figure", self.figure.place)?.then_some(self.figure);
        let classes = placed("classes", self.classes.place)?.then_some(self.classes);
        let track = placed("track", self.track.place)?.then_some(self.track);

        if let Some(m) = &matrix {
            match m.scale_kind {
                ScaleKind::Linear => {}
                ScaleKind::Gamma => {
                    let g = m.gamma;
                    if !(g.is_finite() && g > 0.0 && g <= 10.0) {
                        let span = cx.span("matrix", None, "gamma");
                        return Err(cx.err(&span, "gamma must lie in (0, 10]"));
                    }
                }
                ScaleKind::Log => {
                    let d = m.decades;
                    if !(d.is_finite() && (0.5..=12.0).contains(&d)) {
                        let span = cx.span("matrix", None, "decades");
                        return Err(cx.err(&span, "decades must lie in [0.5, 12]"));
                    }
                }
            }
        }

        let mechanism = self.mechanism;
        let (grid, window) = (mechanism.grid, mechanism.window);
        if window < 2 || window > grid || grid % window != 0 {
            return Err(cx.err(
                &cx.span("mechanism", None, "window"),
                format!("window = {window} must be at least 2 and divide grid = {grid}"),
            ));
        }

        let template = Template {
            name: cx.origin.to_string(),
            description: self.description.trim().to_string(),
            mode: self.mode,
            width,
            height,
            fps,
            timing,
            colors: self.colors,
            fonts: self.fonts,
            image,
            matrix,
            rollout,
            naive,
            figure,
            classes,
            track,
            mechanism,
            compare,
            captions: self.caption,
        };
        let nothing = match template.mode {
            Mode::Figure => template.figure.is_none(),
            Mode::Classes => template.classes.is_none(),
            _ => {
                template.image.is_none()
                    && template.matrix.is_none()
                    && template.rollout.is_none()
                    && template.naive.is_none()
            }
        };
        if nothing {
            return Err(cx.whole(
                "every panel is off; place at least one of [image], [matrix], [rollout], \
                 [naive] (or [figure] for mode = \"figure\", [classes] for mode = \"classes\")",
            ));
        }
        Ok(template)
    }

    /// The two boxes of a compare template, each fitting the canvas; `[compare]` elsewhere,
    /// or a canvas caption outside a compare template, is an error.
    fn compare_boxes(&self, cx: &Cx, canvas: (i32, i32)) -> Result<Option<CompareSpec>> {
        let c = &self.compare;
        if self.mode != Mode::Compare {
            if *c != CompareSpec::default() {
                return Err(cx.err(
                    &cx.span("compare", None, "left"),
                    "[compare] places two models side by side; it needs mode = \"compare\"",
                ));
            }
            if let Some(i) = self.caption.iter().position(|c| c.canvas) {
                return Err(cx.err(
                    &cx.span("caption", Some(i), "canvas"),
                    "canvas = true anchors a caption on the whole canvas of a compare \
                     template (mode = \"compare\"); leave it out",
                ));
            }
            return Ok(None);
        }
        for (key, place) in [("left", c.left), ("right", c.right)] {
            if place == OFF {
                return Err(cx.err(
                    &cx.span("compare", None, key),
                    format!(
                        "a compare template needs [compare] {key} = [x, y, width, height]: \
                         the box of the {} model",
                        if key == "left" { "first" } else { "second" }
                    ),
                ));
            }
            fits(cx, ("compare", key), place, canvas, "canvas")?;
        }
        Ok(Some(c.clone()))
    }
}

/// Checks that `place`, the value of `table.key`, lies inside a `room` of width and height
/// (`what` names it in the message).
fn fits(
    cx: &Cx,
    (table, key): (&str, &str),
    place: Rect,
    (w0, h0): (i32, i32),
    what: &str,
) -> Result<()> {
    let Rect { x, y, w, h } = place;
    if w > 0 && h > 0 && x + w <= w0 && y + h <= h0 {
        return Ok(());
    }
    Err(cx.err(
        &cx.span(table, None, key),
        format!(
            "{key} = [{x}, {y}, {w}, {h}] does not fit the {w0}×{h0} {what} (x, y, width, \
             height with width and height > 0)"
        ),
    ))
}
