"""Settings for every entry point, read from `PNEUMO_*` environment variables.

Built by entry points (CLI, flows), never at import, so importing the library has no side effects.
Nested groups use `__`: `PNEUMO_SPLIT__VAL_FRACTION=0.2`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import PneumoError
from pipeline.redact import is_secret_name, redact


class IngestConfig(BaseModel):
    """How raw files are read and judged while they are ingested."""

    # The largest Kermany image is ~7.3 Mpx; 40 Mpx leaves room for other scanners while still
    # refusing decompression bombs (a 100 KB PNG can claim gigapixels).
    max_pixels: int = Field(40_000_000, gt=0)
    workers: int = Field(2, ge=1, description="Threads that hash, decode and store files.")


class SplitConfig(BaseModel):
    """How train/val (and test, when the layout has none) are carved by patient."""

    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _leave_room_for_training(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must stay below 0.9")
        return self


class ValidationConfig(BaseModel):
    """Bounds for the Great Expectations suite over the manifest."""

    min_rows: int = Field(20, ge=1)
    min_side: int = Field(64, ge=1, description="Smallest accepted width or height in pixels.")
    max_side: int = Field(8192, ge=1, description="Largest accepted width or height in pixels.")
    # PNEUMONIA share per split; outside these bounds is a warning, not a failure: the real
    # dataset is 74 % PNEUMONIA and models cope with class weights.
    min_pneumonia_share: float = Field(0.2, ge=0, le=1)
    max_pneumonia_share: float = Field(0.9, ge=0, le=1)


class AugmentConfig(BaseModel):
    """Keras preprocessing layers applied to training batches only (as fractions of the image)."""

    rotation: float = Field(0.03, ge=0, le=0.5, description="max rotation, fraction of 360 deg")
    zoom: float = Field(0.1, ge=0, lt=1)
    shift: float = Field(0.05, ge=0, lt=1)
    # Off by default: chest X-rays have a left/right anatomy (heart on the left, "R" markers),
    # so a mirrored image is not a plausible radiograph. The seed script flipped; opt in to match.
    flip: bool = False


# The file Keras downloads for ResNet50(weights="imagenet", include_top=False): what a user
# without network access fetches elsewhere and gives as PNEUMO_TRAIN__RESNET_WEIGHTS.
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


class TrainConfig(BaseModel):
    """Model and training sizes; `PROFILES` holds the named profiles' defaults."""

    image_size: int = Field(128, ge=32)
    # Per-film histogram equalisation as a model's first layer (pipeline.layers), so exposure
    # differences between periods and machines reach no learned layer. It helped the pretrained
    # ResNet on the site's films and hurt the CNN from scratch (site AUC 0.908 without, 0.841
    # with; docs/explanation/site-quality.md).
    resnet_intensity_norm: Literal["none", "equalize"] = "equalize"
    cnn_intensity_norm: Literal["none", "equalize"] = "none"
    batch_size: int = Field(32, ge=1)
    # Val AUC of the full-scale run peaked at epoch 4 of 6 (docs/explanation/measured.md); the
    # best epoch is restored.
    cnn_epochs: int = Field(5, ge=0)
    cnn_learning_rate: float = Field(1e-3, gt=0)
    # Pretrained ResNet (see pipeline/train/transfer.py); the cpu-small values come from the
    # measured curve in docs/explanation/measured.md (`python -m benchmarks.transfer_curve`).
    # Phase 1, the head on cached pooled features. "logistic": an L2-regularised logistic
    # regression on standardised features, solved exactly (scikit-learn; `resnet_head_c` is its
    # inverse regularisation strength), deterministic; "adam": `resnet_head_epochs` of Adam.
    # A frozen probe fitted so read the site's films at AUC 0.973 where the Adam head read
    # 0.960 (docs/explanation/site-quality.md).
    resnet_head_fit: Literal["logistic", "adam"] = "logistic"
    resnet_head_c: float = Field(0.01, gt=0)
    resnet_head_epochs: int = Field(15, ge=0, description="phase 1 with adam: epochs")
    # What the head reads: conv5's pooled map, or conv4's beside it (then the cut must lie at
    # or below conv4's output: resnet_unfreeze_blocks >= 3).
    resnet_head_features: Literal["conv5", "conv4+conv5"] = "conv4+conv5"
    resnet_finetune_epochs: int = Field(3, ge=0, description="phase 2: top blocks unfrozen")
    # Residual blocks of ResNet50 (16 in all) trained in phase 2; 3 = the whole conv5 stage.
    resnet_unfreeze_blocks: int = Field(3, ge=0, le=15)
    # Cached views per training image for the pretrained ResNet: the original, then augmented.
    resnet_feature_views: int = Field(1, ge=1, le=8)
    # Central crops cached as further views (fraction of each side kept): films of the later
    # period are collimated tighter than the training films, and these views raised a frozen
    # probe's site-set AUC from 0.953 to 0.973 (docs/explanation/site-quality.md).
    resnet_view_crops: list[Annotated[float, Field(gt=0, lt=1)]] = Field([0.85, 0.7], max_length=6)
    resnet_learning_rate: float = Field(1e-3, gt=0)
    resnet_finetune_learning_rate: float = Field(1e-4, gt=0)
    # Without pretrained weights every layer trains on images, as long as the CNN does.
    resnet_scratch_epochs: int = Field(6, ge=0, description="epochs when trained from scratch")
    # "imagenet" (Keras download), "none", a local .h5/.weights.h5 file, or store://KEY.
    resnet_weights: str = "imagenet"
    # cpu-small only: train from random weights when ImageNet weights cannot be had (offline);
    # the run then records weights_source "none (...)", never "imagenet".
    resnet_weights_fallback: bool = True
    patience: int = Field(3, ge=1, description="early stopping on val AUC, epochs")
    # Which weights the pretrained ResNet keeps after each phase: "last" runs the fixed schedule
    # (val films of the training period are saturated, so their best epoch is noise:
    # docs/explanation/site-quality.md), "best" stops early and restores the best val AUC's.
    resnet_keep: Literal["last", "best"] = "last"
    class_weights: bool = True
    # Labelled local films in train (manifest origin "labeled") weigh this share of the total
    # training weight (never less than their plain count): ~100 local films among ~3,600 would
    # otherwise barely move the model they were labelled for.
    local_weight_share: float = Field(0.25, ge=0, lt=1)
    augment: AugmentConfig = AugmentConfig()
    seed: int = 42
    max_images_per_split: int | None = Field(None, ge=1, description="cap, for smoke runs")
    # Data-parallel training (tf.distribute.MirroredStrategy): "auto" mirrors over every GPU
    # when there are two or more, "mirrored" always (GPUs, else the logical CPU devices),
    # "none" never. The batch size is per device.
    distribute: Literal["auto", "mirrored", "none"] = "none"

    @model_validator(mode="after")
    def _cut_below_the_head_features(self) -> TrainConfig:
        # Fine-tuning runs on activations cached at the cut: conv4's map must be among them.
        if self.resnet_head_features == "conv4+conv5" and self.resnet_unfreeze_blocks < 3:
            raise ValueError(
                "resnet_head_features conv4+conv5 needs resnet_unfreeze_blocks >= 3 (conv4's "
                f"output at or below the cut), got {self.resnet_unfreeze_blocks}; or set "
                "resnet_head_features conv5"
            )
        return self


PROFILES: dict[str, dict] = {
    # Sized for a 2-core CPU: the demo trains both models in a few minutes, the full train split
    # in under 20.
    "cpu-small": {},
    # For GPU users: 224 px, longer training, no silent fallback to random weights.
    "full": {
        "image_size": 224,
        "batch_size": 32,
        "cnn_epochs": 30,
        "resnet_head_epochs": 30,
        "resnet_finetune_epochs": 15,
        "resnet_unfreeze_blocks": 4,
        "resnet_finetune_learning_rate": 1e-5,
        "resnet_scratch_epochs": 30,
        "patience": 5,
        "resnet_weights_fallback": False,
        "distribute": "auto",
    },
    # Test sizes: both models train in seconds on a few dozen images, so the whole flow can be
    # exercised end to end (tests, smoke runs: `pneumo --profile tiny demo`). Random ResNet
    # weights, so it needs no download; the quality numbers mean nothing.
    "tiny": {
        "image_size": 32,
        "batch_size": 8,
        "cnn_epochs": 1,
        "resnet_head_epochs": 1,
        "resnet_finetune_epochs": 0,
        "resnet_scratch_epochs": 1,
        "resnet_weights": "none",
        "patience": 1,
    },
}


class ThresholdConfig(BaseModel):
    """How the decision threshold is chosen on the validation split."""

    rule: Literal["target_sensitivity", "youden"] = "target_sensitivity"
    # Missing pneumonia costs more than a second look at a normal film. The goal is sensitivity
    # >= 0.95 out of sample; 0.98 on val is that plus a margin for the val-to-new-data gap,
    # chosen on validation halves (`python -m benchmarks.threshold_rules`, table in
    # docs/explanation/measured.md).
    target_sensitivity: float = Field(0.98, gt=0, le=1)


class SiteConfig(BaseModel):
    """Site acceptance (`pneumo site accept`): the goal a site's labelled films must show."""

    goal_sensitivity: float = Field(0.95, gt=0, le=1)
    goal_specificity: float = Field(0.90, gt=0, le=1)
    # Random patient halves: the threshold chosen on one, the goal checked on the other.
    holdout_splits: int = Field(200, ge=1)
    seed: int = 0
    # Retraining on labelled local films (`pneumo retrain --labeled`): this share of their
    # patients only judges (challenger against champion, the new champion's threshold); the
    # rest trains (TrainConfig.local_weight_share).
    judge_fraction: float = Field(0.5, ge=0, lt=1)


class CalibrationConfig(BaseModel):
    """How the model's scores are mapped to probabilities, fitted on the validation split."""

    # auto: Platt scaling unless isotonic regression's cross-validated ECE on val is lower by
    # `isotonic_min_gain` (see pipeline.train.calibration).
    method: Literal["auto", "platt", "isotonic", "none"] = "auto"
    bins: int = Field(10, ge=2, le=100, description="equal-width bins of the ECE")
    folds: int = Field(5, ge=2, le=20, description="patient-grouped folds comparing methods")
    isotonic_min_gain: float = Field(0.01, ge=0, le=1)
    # Below this many val films `auto` keeps Platt: isotonic regression overfits small
    # calibration sets (Niculescu-Mizil & Caruana 2005). On the demo's ~100 val films it won
    # the cross-validation by chance and put the threshold on a plateau at 1.0.
    isotonic_min_images: int = Field(1000, ge=0)


class GateConfig(BaseModel):
    """TFX-style gate: absolute floors and no regression against the current champion."""

    min_auc: float = Field(0.75, ge=0, le=1)
    min_sensitivity: float = Field(0.8, ge=0, le=1)
    min_specificity: float = Field(0.5, ge=0, le=1)
    # Non-inferiority margin: the 95 % interval of (candidate - champion) AUC on the same test
    # images, by paired patient bootstrap, must lie above -max_auc_drop.
    max_auc_drop: float = Field(0.01, ge=0, le=1, description="AUC non-inferiority margin")
    min_score_range: float = Field(
        0.02, ge=0, le=1, description="test scores closer together than this: a collapsed model"
    )


class DriftConfig(BaseModel):
    """Which inference-log rows are compared with the reference, and when that is drift."""

    last_n: int | None = Field(500, ge=1, description="the newest N predictions (None: all)")
    days: int | None = Field(None, ge=1, description="only predictions of the last D days")
    # benchmarks/drift_quality.py on the full-scale champion: from 10 images on, the share rule
    # below kept false alarms <= 4 % at every class mix and caught every simulated shift that
    # cost >= 0.01 AUC in >= 99 % of batches (docs/how-to/monitor-and-retrain.md, "Drift quality").
    min_current: int = Field(10, ge=1, description="fewer rows: 'insufficient data'")
    # Image shift (the retraining trigger), on image statistics and embedding components against
    # the reference resampled to the batch's predicted class mix; Evidently's per-column test.
    # "share": drift when at least drift_share of those columns drifted (0.3: the benchmark's
    # best, 0.2 raises up to 11 % false alarms, 0.4 misses small-batch shifts);
    # "embedding": drift when any embedding component drifted (17-28 % false alarms).
    rule: Literal["share", "embedding"] = "share"
    drift_share: float = Field(0.3, gt=0, le=1)
    # And, whatever the rule, a multivariate test of the embedding components (kernel MMD,
    # permutation p-value): image shift when p < representation_alpha (0: never). At 0.02 it
    # found every batch of 100 site films (a later period) and none of 300 carved-test batches
    # (docs/how-to/monitor-and-retrain.md, "Drift quality"); the share rule alone found 41 % of
    # the site batches.
    representation_alpha: float = Field(0.02, ge=0, lt=1)
    representation_permutations: int = Field(200, ge=20)
    # Where newly labelled films arrive (Kaggle layout: train/{NORMAL,PNEUMONIA}/). Image shift
    # retrains only when it holds images the manifest lacks; every retrain adds them.
    labeled_inbox: Path | None = None
    # Prevalence shift (an alert, never a trigger): Fisher's exact test on predicted positives.
    prevalence_alpha: float = Field(0.01, gt=0, lt=1)
    # Data quality (an alert): blank films, and sizes outside the validation's min/max side.
    blank_std: float = Field(2.0, ge=0, description="pixel std (0-255) below which a film is blank")
    quality_max_share: float = Field(0.05, ge=0, le=1)


class PerformanceConfig(BaseModel):
    """Realised performance once labels arrive (`pneumo performance`): the window and the drop
    rule (pipeline.monitor.performance says why this rule; benchmarks/performance_quality.py
    measures its false alarms and power)."""

    days: int | None = Field(None, ge=1, description="only predictions of the last D days")
    tolerance: float = Field(0.05, ge=0, lt=1, description="allowed loss below validated")
    min_per_class: int = Field(30, ge=1, description="labelled films of a class to judge it")
    level: float = Field(0.95, gt=0, lt=1, description="two-sided bootstrap interval")
    resamples: int = Field(1000, ge=100)


class ScopeConfig(BaseModel):
    """The intended-use check on every prediction (`pipeline.data.scope`)."""

    # warn: the label is still given, flagged `in_scope: false` with the reasons; refuse: no
    # label, a rejected-log row with the reasons (the service answers 422; `predict` and
    # `batch-predict` list the film as refused).
    mode: Literal["warn", "refuse"] = "warn"
    # Set at registration: this share of the reference (validation) films falls above the
    # out-of-distribution cut-off, measured on folds the distance was not fitted on. New films
    # of the same period fall above it more often: 0.02 flagged 2.3 % of the carved test split
    # and 3.9 % of the site's films; 0.01 flags 1.1 % and 2.0 % and still every non-chest image
    # (`python -m benchmarks.scope_quality`, docs/explanation/intended-use.md).
    false_flag_rate: float = Field(0.01, gt=0, lt=0.5)
    components: int = Field(50, ge=1, description="PCA axes of the distance")
    folds: int = Field(5, ge=2, le=20)
    # DICOM tags, where a film has them (an absent tag flags nothing): what the training films
    # were. Frontal chest radiographs (computed or digital) of children aged 1 to 5 (Kermany et
    # al. 2018; the model card's intended use).
    modalities: tuple[str, ...] = ("CR", "DX")
    body_parts: tuple[str, ...] = ("CHEST",)
    views: tuple[str, ...] = ("PA", "AP")
    age_years: tuple[int, int] = (1, 5)

    @model_validator(mode="after")
    def age_range_in_order(self) -> ScopeConfig:
        low, high = self.age_years
        if not 0 <= low <= high:
            raise ValueError(f"age_years {self.age_years}: expected 0 <= low <= high")
        return self


class PacsConfig(BaseModel):
    """The PACS that `pneumo pacs sync` reads films from and stores results into (DICOMweb)."""

    # The DICOMweb root, e.g. https://pacs.example.org/dicom-web (Orthanc: <server>/dicom-web).
    url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")  # HTTP basic auth with `username`
    token: SecretStr = SecretStr("")  # or a bearer token (OAuth / a gateway's API token)
    # QIDO-RS cannot ask for instances *received* since a time, only for a StudyDate range:
    # each sync asks from this many days before the last complete sync's date, so a study
    # dated a little before it but filed after it is still found (results are never stored
    # twice: every handled instance is recorded).
    lookback_days: int = Field(2, ge=0)
    timeout_seconds: float = Field(60.0, gt=0, description="per DICOMweb request")
    # Instances retrieved, scored and stored together; a crash loses at most this many scores.
    batch_size: int = Field(16, ge=1)
    cron: str = Field("*/15 * * * *", description="schedule of the pacs-sync deployment")

    @model_validator(mode="after")
    def one_way_to_authenticate(self) -> PacsConfig:
        if self.token.get_secret_value() and (self.username or self.password.get_secret_value()):
            raise ValueError("PNEUMO_PACS__TOKEN and PNEUMO_PACS__USERNAME/PASSWORD: set one")
        return self


class PromotionConfig(BaseModel):
    """What moving `champion` to a new ResNet version requires beyond its gate."""

    # The last `pneumo compare` must name the version as challenger and recommend promoting it
    # (paired AUC non-inferior and sensitivity kept, on labelled shadow traffic): for
    # `pneumo promote` and for an approval. `--force` on promote overrides, recorded.
    require_shadow_evidence: bool = False


class Settings(BaseSettings):
    """Everything an entry point needs; defaults give the embedded, serverless setup."""

    model_config = SettingsConfigDict(env_prefix="PNEUMO_", env_nested_delimiter="__")

    home: Path = Field(Path(".pneumo"), description="State directory of the embedded default.")
    storage: Literal["local", "s3"] = "local"
    # S3 backend (PNEUMO_STORAGE=s3): endpoint host:port and credentials have no defaults.
    s3_endpoint: str = ""
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    s3_bucket_raw: str = "pneumo-raw"
    s3_bucket_data: str = "pneumo-data"
    s3_bucket_mlflow: str = "pneumo-mlflow"
    ingest: IngestConfig = IngestConfig()
    # Keys DICOM patients (an HMAC of PatientID). Unset: one is generated into PNEUMO_HOME on
    # first need; hosts sharing a store must share it.
    patient_key_secret: SecretStr = SecretStr("")
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()
    profile: Literal["cpu-small", "full", "tiny"] = "cpu-small"
    train: TrainConfig | None = Field(None, description="overrides on top of the profile")
    threshold: ThresholdConfig = ThresholdConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    site: SiteConfig = SiteConfig()
    performance: PerformanceConfig = PerformanceConfig()
    promotion: PromotionConfig = PromotionConfig()
    gates: GateConfig = GateConfig()
    # Test films per simulated shift in the model card's failure-mode table (0: none measured);
    # costs shifts x this many predictions per model.
    shift_check_images: int = Field(200, ge=0)
    mlflow_tracking_uri: str | None = Field(
        None, description="default: SQLite in the state directory (also read: MLFLOW_TRACKING_URI)"
    )
    experiment: str = "pneumo-training"
    # Prefect deployments (`pneumo deploy`): schedules are cron strings in the server's timezone.
    work_pool: str = "pneumo-process"
    # The image flow runs start from on Docker and Kubernetes pools (built from infra/Dockerfile).
    deploy_image: str = "pneumo-ops:0.1.0"
    training_cron: str = "0 3 * * 1"
    drift_cron: str = "0 6 * * *"
    retrain_cron: str = "0 4 * * 0"
    performance_cron: str = "0 7 * * *"
    drift: DriftConfig = DriftConfig()
    scope: ScopeConfig = ScopeConfig()
    pacs: PacsConfig = PacsConfig()
    # required: a version that passed its gate becomes champion only once a person approves it
    # (the flow pauses; `pneumo approve`/`reject` or the Prefect UI's form). Server deployments
    # default to required (compose, `pneumo deploy`); the embedded demo keeps auto.
    approval: Literal["auto", "required"] = "auto"
    approval_timeout_seconds: int = Field(3 * 24 * 3600, ge=1, description="then: rejected")
    # Retraining warm-starts from the champion: "refit" solves its head again (as
    # training.resnet_head_fit) on its own features of train and the labelled local films,
    # then `retrain_epochs` fine-tune the top blocks; "keep" only fine-tunes.
    retrain_head: Literal["refit", "keep"] = "refit"
    retrain_epochs: int = Field(2, ge=0, description="fine-tuning epochs when retraining")
    # Registration and promotion wait this long for another command that is moving `champion`.
    lock_timeout_s: float = Field(900.0, gt=0)
    # Prediction service (`pneumo serve`).
    serve_poll_seconds: float = Field(30.0, gt=0, description="how often the alias is re-read")
    serve_max_upload_bytes: int = Field(20_000_000, ge=1)
    serve_max_batch: int = Field(32, ge=1)
    # The whole request body, checked while it streams in; a reverse proxy in front should
    # refuse larger bodies itself (e.g. nginx `client_max_body_size 64m`).
    serve_max_request_bytes: int = Field(64_000_000, ge=1)
    serve_explain_max_side: int = Field(
        1024, ge=64, description="longest side of a Grad-CAM overlay (larger uploads are shrunk)"
    )
    # A request still running after this answers 504 (the model call itself cannot be stopped
    # and finishes in its thread); covers slow uploads too.
    serve_request_timeout_seconds: float = Field(60.0, gt=0)
    # Start-up waits this long for the first champion load; after it the service answers (503
    # until a champion is loaded) and keeps retrying in the background.
    serve_startup_wait_seconds: float = Field(20.0, ge=0)
    # API keys: a file of their SHA-256 hashes (`pneumo api-key new` makes one), one per line.
    # Unset: no key is asked for, and `pneumo serve` listens on loopback only.
    serve_api_keys_file: Path | None = None
    # Inference-log rows kept on local disk while the store refuses writes; past it, rows are
    # dropped with an error logged and counted on /health.
    serve_spool_max_rows: int = Field(100_000, ge=0)
    # The challenger in shadow (`pneumo serve --shadow`): every accepted request is scored again
    # by pneumonia-resnet@challenger off the response path and logged with alias `challenger`.
    serve_shadow: bool = Field(False, description="score each request with the challenger too")
    serve_shadow_max_pending: int = Field(
        64, ge=1, description="requests waiting for the challenger; more are dropped and counted"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: dict) -> dict:
        """Train settings = profile defaults, then any PNEUMO_TRAIN__* overrides."""
        if isinstance(data, dict):
            profile = data.get("profile", "cpu-small")
            overrides = data.get("train") or {}
            if isinstance(overrides, TrainConfig):
                overrides = overrides.model_dump(exclude_unset=True)
            data = {**data, "train": {**PROFILES.get(profile, {}), **overrides}}
        return data

    @model_validator(mode="after")
    def _s3_needs_endpoint_and_keys(self) -> Settings:
        if self.storage == "s3":
            missing = [
                f"PNEUMO_S3_{name.upper()}"
                for name, value in (
                    ("endpoint", self.s3_endpoint),
                    ("access_key", self.s3_access_key.get_secret_value()),
                    ("secret_key", self.s3_secret_key.get_secret_value()),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"PNEUMO_STORAGE=s3 needs {', '.join(missing)}")
        return self

    @property
    def training(self) -> TrainConfig:
        assert self.train is not None  # always set by _apply_profile
        return self.train

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def cache_dir(self) -> Path:
        """Local copies that can be fetched again (stored films, models, weights): safe to
        delete."""
        return self.home / "cache"

    def tracking_uri(self) -> str:
        """Explicit setting, else MLFLOW_TRACKING_URI, else SQLite in the state directory."""
        explicit = self.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        return explicit or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def spool_dir(self) -> Path:
        """Inference-log objects the store refused, until it takes them (see serve.background)."""
        return self.home / "spool"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"


class SettingsError(PneumoError, ValueError):
    """Settings that do not validate, described by variable name with every secret masked."""

    exit_code = 2  # a usage error, as click's own for a bad option


def load_settings() -> Settings:
    """Settings from the environment, or a `SettingsError` naming each bad variable.

    Pydantic's own message quotes the whole input, S3 keys included, and would carry them into
    terminals and Prefect logs; this one shows a value only for a setting that is not secret.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "PNEUMO_" + "__".join(str(part) for part in error["loc"]).upper()
            value = error.get("input")
            shown = error["loc"] and not is_secret_name(name) and not isinstance(value, dict)
            problems.append(f"{name}={value!r}: {error['msg']}" if shown else error["msg"])
        raise SettingsError(redact(f"invalid setting: {'; '.join(problems)}")) from None
