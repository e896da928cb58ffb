//! The classes figure: the input, then what the model looks at for each of its most probable
//! classes — the class-specific relevance of each, side by side with its probability.

use image::RgbImage;

use super::figure::{draw_columns, input_column, Column, Columns, Tile};
use super::{Ctx, Frame, Layer, Panel, Prepare};
use crate::render::format::Vars;
use crate::render::story::Story;
use crate::render::template::{ClassesSpec, Mode};

/// The classes figure.
#[derive(Debug)]
pub struct ClassesPanel {
    spec: ClassesSpec,
}

/// The classes figure, if the template is a classes template with a classes section.
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.template().classes.as_ref()?;
    if p.template().mode != Mode::Classes {
        return None;
    }
    Some(Box::new(ClassesPanel { spec: spec.clone() }))
}

impl Panel for ClassesPanel {
    fn layer(&self) -> Layer {
        Layer::Figure
    }

    fn draw(&self, f: &mut Frame) {
        draw_classes(f.img, f.ctx, &self.spec, f.story, f.vars);
    }
}

/// Draws the classes figure into `img` (which already holds the background).
fn draw_classes(img: &mut RgbImage, ctx: &Ctx, spec: &ClassesSpec, story: &Story, vars: &Vars) {
    let lut = spec.colormap.lut();
    let mut columns = vec![input_column(spec.input_title.render(vars))];
    for class in story.class_maps().iter().take(spec.count) {
        let mut v = vars.clone();
        v.label = class.prediction.label.clone();
        v.class = class.prediction.label.clone();
        v.probability = format!("{:.1}%", class.prediction.probability * 100.0);
        columns.push(Column {
            header: spec.title.render(&v),
            tiles: vec![Tile::input_map(&class.map)],
        });
    }
    let figure = Columns {
        place: spec.place,
        columns,
        lut: &lut,
        alpha: spec.alpha,
        note: spec.bar.render(vars),
        arrows: false,
    };
    draw_columns(img, ctx, story, &figure);
}
