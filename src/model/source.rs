//! Where a model comes from: a local folder (Hugging Face or timm layout), a Hugging Face hub
//! id (downloaded once into the usual cache, then used offline), or the embedded default.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::checkpoint::{Checkpoint, Layout};
use super::timm;
use super::{Architecture, Model, Network};
use crate::error::{Error, Result};
use crate::preprocess::{Filter, Preprocessor};

/// A model to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelSource {
    /// The small Swin trained on cluttered Fashion-MNIST that ships inside the binary
    /// (`assets/model/`), so everything works offline.
    #[default]
    Embedded,
    /// The small ViT trained on the same scenes that ships beside it (`assets/vit/`): the
    /// compare template's default second model.
    EmbeddedVit,
    /// A folder with `config.json` and `model.safetensors` or `pytorch_model.bin`.
    Folder(PathBuf),
    /// A Hugging Face hub id such as `microsoft/swin-tiny-patch4-window7-224`.
    Hub(String),
}

impl ModelSource {
    /// Reads a `--model` argument: `embedded:swin` or `embedded:vit` (the embedded models), an
    /// existing folder, else something shaped like a hub id (`owner/name`), else a folder
    /// (which will be reported missing).
    pub fn parse(arg: &str) -> Self {
        match arg {
            EMBEDDED_SWIN_ARG => return ModelSource::Embedded,
            EMBEDDED_VIT_ARG => return ModelSource::EmbeddedVit,
            _ => {}
        }
        let path = Path::new(arg);
        let hub_like = !path.exists()
            && arg.matches('/').count() == 1
            && !arg.starts_with(['.', '/', '~'])
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if hub_like {
            ModelSource::Hub(arg.to_string())
        } else {
            ModelSource::Folder(path.to_path_buf())
        }
    }

    /// Loads the model.
    pub fn load(&self) -> Result<Model> {
        match self {
            ModelSource::Embedded => EMBEDDED_SWIN.load(),
            ModelSource::EmbeddedVit => EMBEDDED_VIT.load(),
            ModelSource::Folder(dir) => load_folder(dir, dir.display().to_string()),
            ModelSource::Hub(id) => load_hub(id),
        }
    }
}

/// The `--model` argument that names the embedded Swin.
pub const EMBEDDED_SWIN_ARG: &str = "embedded:swin";
/// The `--model` argument that names the embedded ViT.
pub const EMBEDDED_VIT_ARG: &str = "embedded:vit";

/// A model whose files are inside the binary.
struct Embedded {
    name: &'static str,
    config: &'static str,
    preprocessor: &'static str,
    weights: &'static [u8],
}

impl Embedded {
    fn load(&self) -> Result<Model> {
        let checkpoint = Checkpoint::from_safetensors_bytes(self.weights, Path::new(self.name))?;
        let config = Architecture::from_hf_json(self.config)?;
        let preprocessor = Preprocessor::from_hf_json(self.preprocessor, config.image_size())?;
        Ok(Model {
            network: Network::load(&checkpoint, config)?,
            preprocessor,
            name: self.name.into(),
        })
    }
}

static EMBEDDED_SWIN: Embedded = Embedded {
    name: "embedded fashion-swin",
    config: include_str!("../../assets/model/config.json"),
    preprocessor: include_str!("../../assets/model/preprocessor_config.json"),
    weights: include_bytes!("../../assets/model/model.safetensors"),
};

static EMBEDDED_VIT: Embedded = Embedded {
    name: "embedded fashion-vit",
    config: include_str!("../../assets/vit/config.json"),
    preprocessor: include_str!("../../assets/vit/preprocessor_config.json"),
    weights: include_bytes!("../../assets/vit/model.safetensors"),
};

/// The files of a model, wherever they lie.
struct ModelFiles {
    config: PathBuf,
    weights: PathBuf,
    preprocessor: Option<PathBuf>,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn load_folder(dir: &Path, name: String) -> Result<Model> {
    if !dir.is_dir() {
        return Err(Error::Model(format!(
            "model folder {} does not exist; pass a folder holding config.json and model.safetensors, or a hub id such as microsoft/swin-tiny-patch4-window7-224",
            dir.display()
        )));
    }
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(Error::Model(format!(
            "{} is missing; a model folder needs config.json beside its weights",
            config.display()
        )));
    }
    let weights = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Model(format!(
                "{} holds neither model.safetensors nor pytorch_model.bin",
                dir.display()
            ))
        })?;
    let preprocessor = Some(dir.join("preprocessor_config.json")).filter(|p| p.is_file());
    load_files(
        &ModelFiles {
            config,
            weights,
            preprocessor,
        },
        name,
    )
}

fn load_files(files: &ModelFiles, name: String) -> Result<Model> {
    let mut checkpoint = Checkpoint::read(&files.weights)?;
    let text = read_text(&files.config)?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Model(format!("{} is malformed: {e}", files.config.display())))?;
    let timm = json.get("architecture").is_some() || json.get("pretrained_cfg").is_some();
    let (config, default_pre) =
        if timm || (checkpoint.layout() == Layout::Timm && json.get("depths").is_none()) {
            timm::config(&json, &checkpoint)?
        } else {
            let config = Architecture::from_hf_json(&text)?;
            let pre = match &config {
                Architecture::Swin(c) => Preprocessor::imagenet(c.image_size),
                // ViTImageProcessor's defaults: bilinear, mean and std 0.5.
                Architecture::ViT(c) => Preprocessor {
                    filter: Filter::Bilinear,
                    mean: [0.5; 3],
                    std: [0.5; 3],
                    ..Preprocessor::imagenet(c.image_size)
                },
            };
            (config, pre)
        };
    checkpoint.prefix_bare_backbone(config.model_type());
    let preprocessor = match &files.preprocessor {
        Some(p) => Preprocessor::from_hf_json(&read_text(p)?, config.image_size())?,
        None => default_pre,
    };
    Ok(Model {
        network: Network::load(&checkpoint, config)?,
        preprocessor,
        name,
    })
}

/// Without the `hub` feature (a lean library build) there is no downloader.
#[cfg(not(feature = "hub"))]
fn load_hub(id: &str) -> Result<Model> {
    Err(Error::Model(format!(
        "`{id}` is a Hugging Face hub id, but this build has no hub support (the `hub` feature); pass a local folder"
    )))
}

#[cfg(feature = "hub")]
fn load_hub(id: &str) -> Result<Model> {
    let cache = hf_hub::Cache::from_env();
    let cached = cache.model(id.to_string());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    let mut api: Option<hf_hub::api::sync::ApiRepo> = None;
    let mut fetch = |file: &str| -> Result<Option<PathBuf>> {
        if let Some(p) = cached.get(file) {
            return Ok(Some(p));
        }
        if offline {
            return Ok(None);
        }
        if api.is_none() {
            let built = hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(true)
                .build()
                .map_err(|e| hub_error(id, &cache, &e.to_string()))?;
            api = Some(built.model(id.to_string()));
        }
        let Some(repo) = api.as_ref() else {
            return Ok(None);
        };
        match repo.get(file) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.to_string().contains("404") => Ok(None),
            Err(e) => Err(hub_error(id, &cache, &e.to_string())),
        }
    };
    let not_there = |what: &str| {
        Error::Model(format!(
            "`{id}` has no {what} on the Hugging Face hub nor in the cache at {}{}; check the id, or pass a local folder",
            cache.path().display(),
            if offline { " (HF_HUB_OFFLINE is set)" } else { "" }
        ))
    };
    let config = fetch("config.json")?.ok_or_else(|| not_there("config.json"))?;
    let weights = match fetch("model.safetensors")? {
        Some(p) => p,
        None => fetch("pytorch_model.bin")?
            .ok_or_else(|| not_there("model.safetensors or pytorch_model.bin"))?,
    };
    let preprocessor = fetch("preprocessor_config.json")?;
    load_files(
        &ModelFiles {
            config,
            weights,
            preprocessor,
        },
        id.to_string(),
    )
}

#[cfg(feature = "hub")]
fn hub_error(id: &str, cache: &hf_hub::Cache, message: &str) -> Error {
    let message = message.lines().next().unwrap_or(message);
    if message.contains("401") || message.contains("403") {
        return Error::Model(format!(
            "`{id}` is not a public model on the Hugging Face hub ({message}); check the id or log in with a token"
        ));
    }
    Error::Model(format!(
        "could not download `{id}` from the Hugging Face hub ({message}); no network? Models already downloaded are used from the cache at {} without network; or pass a local folder",
        cache.path().display()
    ))
}
