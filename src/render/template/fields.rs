//! The checks of single values, as serde `deserialize_with` functions: each reads its value,
//! checks its range and fails with [`invalid`], which the parser places on the value's line
//! and [`super::diagnostics`] words as `origin:line: [table] key = value …`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::diagnostics::invalid;
use super::spec::{Paint, OFF};
use crate::render::canvas::{Rect, Rgb};
use crate::render::format::{placeholder_names, Format, FormatError};

/// Seconds in [0, 3600].
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if !x.is_finite() || !(0.0..=3600.0).contains(&x) {
        return Err(invalid(format!(
            " = {x} is not a number of seconds in [0, 3600]"
        )));
    }
    Ok(x)
}

fn unit_f64(x: f64) -> Result<f32, String> {
    if !x.is_finite() || !(0.0..=1.0).contains(&x) {
        return Err(format!(" = {x} must lie in [0, 1]"));
    }
    Ok(x as f32)
}

/// A share in [0, 1].
pub fn unit<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    unit_f64(f64::deserialize(d)?).map_err(invalid)
}

/// A share in (0, 1], at `f32` precision.
pub fn fill<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = unit_f64(f64::deserialize(d)?).map_err(invalid)?;
    if x <= 0.0 {
        return Err(invalid(" must be above 0"));
    }
    Ok(f64::from(x))
}

fn font_size_f64(x: f64) -> Result<f32, String> {
    if !x.is_finite() || !(4.0..=400.0).contains(&x) {
        return Err(format!(" = {x} is not a font size in [4, 400] pixels"));
    }
    Ok(x as f32)
}

/// A font size in [4, 400] pixels.
pub fn font_size<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    font_size_f64(f64::deserialize(d)?).map_err(invalid)
}

/// A font size given (the key is optional).
pub fn opt_font_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    font_size(d).map(Some)
}

/// A number of classes in [1, 10].
pub fn class_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let x = u32::deserialize(d)? as usize;
    if !(1..=10).contains(&x) {
        return Err(invalid(format!(
            " = {x} must be a number of classes in [1, 10]"
        )));
    }
    Ok(x)
}

/// An even number of tokens in [2, 32].
pub fn grid<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let x = u32::deserialize(d)? as usize;
    if !(2..=32).contains(&x) || !x.is_multiple_of(2) {
        return Err(invalid(format!(
            " = {x} must be an even number of tokens in [2, 32]"
        )));
    }
    Ok(x)
}

/// A number of tokens (its range depends on other keys).
pub fn tokens<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    Ok(u32::deserialize(d)? as usize)
}

/// A width in (0, 100] tokens.
pub fn sigma<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let x = f64::deserialize(d)?;
    if !(x.is_finite() && x > 0.0 && x <= 100.0) {
        return Err(invalid(" must lie in (0, 100] tokens"));
    }
    Ok(x as f32)
}

/// A caption or title with placeholders.
pub fn format<'de, D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
    let s = String::deserialize(d)?;
    Format::parse(&s).map_err(|e| match e {
        FormatError::Unknown(name) => invalid(format!(
            ": unknown placeholder '{{{name}}}'; known placeholders: {}",
            placeholder_names()
        )),
        FormatError::Unbalanced => {
            invalid(": unbalanced brace; write {{ and }} for literal braces")
        }
    })
}

/// `"#rrggbb"`.
pub fn parse_hex(s: &str) -> Option<Rgb> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let v = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some(Rgb([v(0)?, v(2)?, v(4)?]))
}

/// A colour `"#rrggbb"` (a type of its own, so each element of a list is placed on its own).
struct Hex(Rgb);

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, so the error carries this element's own span.
        struct V;
        impl Visitor<'_> for V {
            type Value = Hex;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a colour \"#rrggbb\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Hex, E> {
                parse_hex(s.trim())
                    .map(Hex)
                    .ok_or_else(|| invalid(format!(" = '{s}' is not a colour \"#rrggbb\"")))
            }
        }
        d.deserialize_str(V)
    }
}

/// A colour `"#rrggbb"`.
pub fn hex<'de, D: Deserializer<'de>>(d: D) -> Result<Rgb, D::Error> {
    Hex::deserialize(d).map(|h| h.0)
}

/// A list of colours `"#rrggbb"`.
pub fn hex_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Rgb>, D::Error> {
    Ok(Vec::<Hex>::deserialize(d)?
        .into_iter()
        .map(|h| h.0)
        .collect())
}

impl<'de> Deserialize<'de> for Paint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let s = raw.trim();
        if let Some(rgb) = parse_hex(s) {
            return Ok(Paint::Rgb(rgb));
        }
        Ok(match s {
            "background" => Paint::Background,
            "panel" => Paint::Panel,
            "text" => Paint::Text,
            "muted" => Paint::Muted,
            "accent" => Paint::Accent,
            "grid" => Paint::Grid,
            _ => {
                return Err(invalid(format!(
                    " = '{s}' is not a colour; expected \"#rrggbb\" or one of background, \
                     panel, text, muted, accent, grid"
                )))
            }
        })
    }
}

/// `[x, y]`.
pub fn pair<'de, D: Deserializer<'de>>(d: D) -> Result<(i32, i32), D::Error> {
    let [x, y] = <[i32; 2]>::deserialize(d)?;
    Ok((x, y))
}

/// `[x, y, width, height]` in pixels, or `"off"` ([`OFF`]); whether it fits the canvas is
/// checked in resolution.
pub fn place<'de, D: Deserializer<'de>>(d: D) -> Result<Rect, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Rect;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("[x, y, width, height] in pixels, or \"off\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Rect, E> {
            if s == "off" {
                Ok(OFF)
            } else {
                Err(E::invalid_value(de::Unexpected::Str(s), &self))
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rect, A::Error> {
            let mut v = [0u32; 4];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<de::IgnoredAny>()?.is_some() {
                return Err(de::Error::invalid_length(5, &self));
            }
            let [x, y, w, h] = v;
            // No canvas is wider than 8192: a larger number never fits.
            if v.iter().any(|&c| c > 1 << 16) {
                return Err(invalid(format!(
                    " = [{x}, {y}, {w}, {h}] does not fit any canvas (at most 8192×8192)"
                )));
            }
            Ok(Rect::new(x as i32, y as i32, w as i32, h as i32))
        }
    }
    d.deserialize_any(V)
}
