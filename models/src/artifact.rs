//! A trained model on disk: safetensors weights plus a JSON manifest that pins the spec, the
//! per-site normalizations, the lineage, metrics and the sha256 of the weights file.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use datasets::window::{feature_count, feature_names};
use datasets::{SampleSet, Target};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ModelError;
use crate::config::{ForecasterConfig, ParameterSpec};
use crate::evaluation::TrainingMode;
use crate::forecaster::QuantileForecaster;
use crate::training::TrainedForecaster;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const FORMAT_VERSION: u32 = 1;

/// What the weights mean: network, target and input layout. Loading refuses weights whose
/// spec is inconsistent, so a forecast is never computed with mismatched features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub architecture: ForecasterConfig,
    pub target: Target,
    pub n_features: usize,
    pub context: usize,
    pub horizon: usize,
    pub step_seconds: i64,
    /// Input names in layout order (`datasets::window::feature_names`).
    pub feature_names: Vec<String>,
    /// Parameter tensors in flatten order; the safetensors file holds exactly these.
    pub parameters: Vec<ParameterSpec>,
}

impl ModelSpec {
    pub fn new(
        architecture: ForecasterConfig,
        target: Target,
        context: usize,
        step_seconds: i64,
    ) -> Self {
        let (n_features, horizon) = (architecture.n_features, architecture.horizon);
        Self {
            parameters: architecture.parameter_specs(),
            feature_names: feature_names(context, horizon),
            architecture,
            target,
            n_features,
            context,
            horizon,
            step_seconds,
        }
    }

    /// Checks that every part of the spec describes the same model.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mismatch = |reason: String| Err(ModelError::SpecMismatch(reason));
        self.architecture
            .validate()
            .map_err(|e| ModelError::SpecMismatch(e.to_string()))?;
        let arch = &self.architecture;
        if (arch.n_features, arch.horizon) != (self.n_features, self.horizon) {
            return mismatch(format!(
                "architecture is {} features / horizon {}, spec says {} / {}",
                arch.n_features, arch.horizon, self.n_features, self.horizon
            ));
        }
        if self.step_seconds <= 0 {
            return mismatch(format!("step of {} s", self.step_seconds));
        }
        let expected_features = feature_count(self.context, self.horizon);
        if self.n_features != expected_features
            || self.feature_names != feature_names(self.context, self.horizon)
        {
            return mismatch(format!(
                "feature layout of {} inputs does not match context {} / horizon {} ({expected_features} inputs)",
                self.n_features, self.context, self.horizon
            ));
        }
        let expected = arch.parameter_specs();
        if self.parameters != expected {
            let first = self.parameters.iter().zip(&expected).find(|(a, b)| a != b);
            return mismatch(match first {
                Some((found, wanted)) => format!(
                    "parameter `{}` has shape {:?}, the architecture gives `{}` {:?}",
                    found.name, found.shape, wanted.name, wanted.shape
                ),
                None => format!(
                    "{} parameters listed, the architecture has {}",
                    self.parameters.len(),
                    expected.len()
                ),
            });
        }
        Ok(())
    }
}

/// One site's target scaling: forecasts for that site come back in kW through it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteNormalization {
    pub site_id: String,
    pub offset_kw: f32,
    pub scale_kw: f32,
}

/// Where the weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub mode: TrainingMode,
    pub seed: u64,
    pub epochs_run: usize,
    pub samples: usize,
    /// Federated rounds, when trained by the federation.
    #[serde(default)]
    pub rounds: Option<usize>,
    /// Content hash of the artifact this one was trained from.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub format_version: u32,
    pub spec: ModelSpec,
    pub normalizations: Vec<SiteNormalization>,
    pub lineage: Lineage,
    /// Named scores, e.g. `test_nmae`.
    pub metrics: BTreeMap<String, f64>,
    pub weights_file: String,
    /// Hex sha256 of the weights file's bytes.
    pub weights_sha256: String,
}

/// A model ready to save, or loaded and verified.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelArtifact {
    manifest: ModelManifest,
    parameters: Vec<f32>,
    weights: Vec<u8>,
}

impl ModelArtifact {
    /// Packs flat parameters (in the spec's flatten order) with their spec and provenance.
    pub fn new(
        spec: ModelSpec,
        normalizations: Vec<SiteNormalization>,
        lineage: Lineage,
        metrics: BTreeMap<String, f64>,
        parameters: Vec<f32>,
    ) -> Result<Self, ModelError> {
        spec.validate()?;
        let expected = spec.architecture.num_params();
        if parameters.len() != expected {
            return Err(ModelError::ParameterCount {
                expected,
                actual: parameters.len(),
            });
        }
        let weights = encode_weights(&spec.parameters, &parameters)?;
        let manifest = ModelManifest {
            format_version: FORMAT_VERSION,
            spec,
            normalizations,
            lineage,
            metrics,
            weights_file: WEIGHTS_FILE.to_string(),
            weights_sha256: sha256_hex(&weights),
        };
        Ok(Self {
            manifest,
            parameters,
            weights,
        })
    }

    /// Packs a centrally or locally trained forecaster with the normalizations of the
    /// samples it was trained on.
    pub fn from_trained(
        trained: &TrainedForecaster,
        target: Target,
        train: &SampleSet,
        mode: TrainingMode,
        metrics: BTreeMap<String, f64>,
    ) -> Result<Self, ModelError> {
        let config = trained.forecaster.config().clone();
        let lineage = Lineage {
            mode,
            seed: config.seed,
            epochs_run: trained.report.epochs_run,
            samples: trained.report.fit_samples + trained.report.validation_samples,
            rounds: None,
            parent: None,
        };
        let normalizations = train
            .site_ids
            .iter()
            .zip(&train.normalizations)
            .map(|(id, n)| SiteNormalization {
                site_id: id.clone(),
                offset_kw: n.offset_kw,
                scale_kw: n.scale_kw,
            })
            .collect();
        let spec = ModelSpec::new(config, target, train.context, train.step_seconds);
        Self::new(
            spec,
            normalizations,
            lineage,
            metrics,
            trained.forecaster.to_flat()?,
        )
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// Flat parameters in flatten order.
    pub fn parameters(&self) -> &[f32] {
        &self.parameters
    }

    /// The network, ready to predict.
    pub fn forecaster(&self) -> Result<QuantileForecaster, ModelError> {
        QuantileForecaster::from_flat(self.manifest.spec.architecture.clone(), &self.parameters)
    }

    /// Writes `dir/weights.safetensors` then `dir/manifest.json`, each through a temporary
    /// file and a rename, so a crash never leaves a manifest pointing at partial weights.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let manifest =
            serde_json::to_vec_pretty(&self.manifest).map_err(|source| ModelError::Manifest {
                path: dir.join(MANIFEST_FILE),
                source,
            })?;
        write_atomically(&dir.join(&self.manifest.weights_file), &self.weights)?;
        write_atomically(&dir.join(MANIFEST_FILE), &manifest)
    }

    /// Reads an artifact and verifies, in order: the manifest parses, the weights hash
    /// matches, the spec is consistent, and the weights hold exactly the spec's tensors.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = fs::read(&manifest_path).map_err(|e| ModelError::io(&manifest_path, e))?;
        let manifest: ModelManifest =
            serde_json::from_slice(&text).map_err(|source| ModelError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(ModelError::SpecMismatch(format!(
                "manifest format version {} (this build reads {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        // The weights must sit beside the manifest: a name with a path in it could point anywhere.
        if Path::new(&manifest.weights_file)
            .file_name()
            .and_then(|n| n.to_str())
            != Some(manifest.weights_file.as_str())
        {
            return Err(ModelError::SpecMismatch(format!(
                "weights file `{}` is not a plain file name",
                manifest.weights_file
            )));
        }
        let weights_path = dir.join(&manifest.weights_file);
        let weights = fs::read(&weights_path).map_err(|e| ModelError::io(&weights_path, e))?;
        let actual = sha256_hex(&weights);
        if actual != manifest.weights_sha256.to_ascii_lowercase() {
            return Err(ModelError::HashMismatch {
                path: weights_path,
                expected: manifest.weights_sha256,
                actual,
            });
        }
        manifest.spec.validate()?;
        if let Some(n) = manifest
            .normalizations
            .iter()
            .find(|n| !(n.scale_kw.is_finite() && n.scale_kw > 0.0 && n.offset_kw.is_finite()))
        {
            return Err(ModelError::SpecMismatch(format!(
                "site `{}` has an unusable normalization",
                n.site_id
            )));
        }
        let parameters = decode_weights(&manifest.spec.parameters, &weights).map_err(|reason| {
            ModelError::Weights {
                path: weights_path,
                reason,
            }
        })?;
        Ok(Self {
            manifest,
            parameters,
            weights,
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    fs::write(&temporary, bytes).map_err(|e| ModelError::io(&temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| ModelError::io(path, e))
}

/// One little-endian f32 tensor per parameter, named as in the spec.
fn encode_weights(specs: &[ParameterSpec], flat: &[f32]) -> Result<Vec<u8>, ModelError> {
    let mut buffers = Vec::with_capacity(specs.len());
    let mut offset = 0;
    for spec in specs {
        let bytes: Vec<u8> = flat[offset..offset + spec.len()]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        offset += spec.len();
        buffers.push((spec.name.clone(), spec.shape.clone(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| ModelError::TensorData(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| ModelError::TensorData(e.to_string()))
}

fn decode_weights(specs: &[ParameterSpec], bytes: &[u8]) -> Result<Vec<f32>, String> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    if tensors.len() != specs.len() {
        return Err(format!(
            "{} tensors, the spec lists {}",
            tensors.len(),
            specs.len()
        ));
    }
    let mut flat = Vec::with_capacity(specs.iter().map(ParameterSpec::len).sum());
    for spec in specs {
        let view = tensors.tensor(&spec.name).map_err(|e| e.to_string())?;
        if view.dtype() != Dtype::F32 || view.shape() != spec.shape.as_slice() {
            return Err(format!(
                "tensor `{}` is {:?} {:?}, the spec says F32 {:?}",
                spec.name,
                view.dtype(),
                view.shape(),
                spec.shape
            ));
        }
        flat.extend(
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    Ok(flat)
}
