//! The demo input that ships inside the binary: a held-out cluttered Fashion-MNIST scene
//! (`assets/scenes/scene_0.png`) that the embedded model has never seen.

use image::RgbImage;

use crate::error::{Error, Result};

static SCENE: &[u8] = include_bytes!("../assets/scenes/scene_0.png");

/// Name used for the demo image in captions and file names.
pub const DEMO_NAME: &str = "demo-scene";

/// The embedded demo scene, as RGB.
pub fn demo_image() -> Result<RgbImage> {
    image::load_from_memory(SCENE)
        .map(|i| i.to_rgb8())
        .map_err(|e| Error::InvalidArgument(format!("the embedded demo image is damaged: {e}")))
}
