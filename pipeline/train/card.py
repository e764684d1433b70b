"""Model cards (Mitchell et al. 2019) for registered versions: collected once as JSON, rendered
to Markdown and to self-contained HTML (images inlined), re-rendered when a person approves.

The card is built from what the run measured: nothing in it is typed by hand except the intended
use and the ethical considerations, which are the same for every version of this platform.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.adapters.registry import Registry
from pipeline.files import write_atomic
from pipeline.settings import ThresholdConfig
from pipeline.train.calibration import Calibration
from pipeline.train.uncertainty import INTERVAL_METRICS

CARD_DIR = "model_card"  # the run artifact folder that holds a version's card
CARD_FILES = ("model_card.json", "model_card.md", "model_card.html")
IMAGES = {"gradcam": "gradcam.png", "reliability": "reliability.png"}
INTENDED_USE = [
    "A screening aid that orders a worklist: frontal chest X-rays of children aged 1 to 5, "
    "scored for pneumonia so that likely cases are read first.",
    "Trained and tested on one hospital's films (Guangzhou Women and Children's Medical Center; "
    "Kermany et al. 2018, CC BY 4.0): other hospitals must validate it on their own films.",
    "Out of scope: adults, lateral views, CT, any use without a radiologist reading the film. "
    "It is not a diagnosis and must not rule pneumonia out on its own.",
]
ETHICS = [
    "Missing pneumonia costs more than a second look at a normal film: the threshold trades "
    "specificity for sensitivity on purpose.",
    "Patient identifiers are stored only as salted hashes; films in this card come from the "
    "public, de-identified dataset.",
    "Grad-CAM maps show where the score rose, not why: they can highlight markers, text or the "
    "film's edge, and must not be read as a finding.",
]
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
}


def split_counts(rows: pd.DataFrame, labels: np.ndarray) -> dict[str, int]:
    """Images, patients, classes and pneumonia subtypes of one split."""
    subtypes = rows["subtype"].value_counts() if "subtype" in rows else pd.Series(dtype=int)
    return {
        "images": len(rows),
        "patients": int(rows["patient_id"].nunique()),
        "NORMAL": int((labels == 0).sum()),
        "PNEUMONIA": int((labels == 1).sum()),
        "bacterial": int(subtypes.get("bacteria", 0)),
        "viral": int(subtypes.get("virus", 0)),
    }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows: NaN becomes None."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def with_ci(metrics: dict[str, Any], name: str) -> str:
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    point = number(metrics.get(name))
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return point
    return f"{point} [{low:.3f}, {high:.3f}]"


def approval_lines(approval: dict[str, Any]) -> list[str]:
    if approval.get("status") in {"approved", "rejected", "timed out"}:
        return [
            f"Decision: **{approval['status']}** by {approval.get('by', 'unknown')} at "
            f"{approval.get('at', 'unknown')}",
            f"Reason: {approval.get('reason') or 'none given'}",
        ]
    return [f"Approval: {approval.get('status', 'not recorded')}"]


def failure_modes(shifts: list[dict[str, Any]]) -> list[str]:
    """Shifts that cost more than 0.05 sensitivity (missed pneumonia) or 0.10 specificity
    (false alarms) against the same films unshifted, each named with what it costs."""
    base = next((s for s in shifts if s["shift"] == "none"), None)
    if base is None:
        return []
    lines = []
    for s in shifts:
        costs = [
            f"{name} falls from {number(base[name])} to {number(s[name])}"
            for name, margin in (("sensitivity", 0.05), ("specificity", 0.10))
            if None not in (s[name], base[name]) and s[name] < base[name] - margin
        ]
        if costs:
            lines.append(
                f"Under '{s['shift']}' {' and '.join(costs)}: the monitoring is built to flag such "
                "films in batches (drift check); do not rely on the score for them."
            )
    return lines


def site_section(history: list[dict[str, Any]]) -> list[tuple[str, list[tuple]]]:
    """The latest site acceptance in detail (its threshold is the one served), then every
    acceptance so far, oldest first; nothing before the first one."""
    if not history:
        return []
    last = history[-1]
    m, films = last["metrics"], last["films"]
    goal = last["goal"]
    return [("Site validation", [
        ("p", f"**{'Accepted' if last['accepted'] else 'Not accepted'}** on the site's labelled "
              f"films (manifest `{last['manifest_id']}`: {films['films']} films, "
              f"{films['patients']} patients, {films['NORMAL']} NORMAL, {films['PNEUMONIA']} "
              f"PNEUMONIA) by {last['by']} at {last['at']}. Goal: sensitivity >= "
              f"{goal['sensitivity']:.2f} and specificity >= {goal['specificity']:.2f}."),
        ("table", ["metric", "value [95 % CI]"],
         [[METRIC_LABELS[k], with_ci(m, k)] for k in INTERVAL_METRICS]),
        ("ul", [
            f"Served threshold {last['threshold']:.4f} ({last['rule']}), replacing "
            f"{last['previous_threshold']:.4f}; at that one these films gave sensitivity "
            f"{number(last['at_previous']['sensitivity'])}, specificity "
            f"{number(last['at_previous']['specificity'])}.",
            *last["reasons"],
        ]),
        ("table", ["at", "by", "films", "manifest", "threshold", "AUC", "sensitivity",
                   "specificity", "accepted"],
         [[h["at"], h["by"], h["films"]["films"], h["manifest_id"], f"{h['threshold']:.4f}",
           number(h["metrics"]["roc_auc"]), number(h["metrics"]["sensitivity"]),
           number(h["metrics"]["specificity"]), "yes" if h["accepted"] else "no"]
          for h in history]),
    ])]  # fmt: skip


def scope_lines(scope: dict | None) -> list[str]:
    """How every prediction is checked against the intended use (`in_scope`)."""
    scope = scope or {}
    checks = (
        "Every prediction says whether the film is within this use (`in_scope`, with the "
        "reasons): colour images and flat images are flagged"
    )
    if "cutoff" in scope:
        checks += (
            ", and so are films unlike the training films: a Mahalanobis distance on the "
            f"model's pooled features above {scope['cutoff']:.1f}, the cut-off above which "
            f"{scope['false_flag_rate']:.0%} of the {scope['reference_films']} validation films "
            "fall (each measured by a fit without it)"
        )
        if "test_films" in scope:
            checks += (
                f"; of the {scope['test_films']} carved test films (the same period, not used to "
                f"set it) the check flagged {scope['test_flag_rate']:.1%}"
            )
    else:
        checks += "; this version has no distance to its training films"
    lines = [checks + ". `PNEUMO_SCOPE__MODE`: warn (default) or refuse."]
    if "dicom" in scope:
        rules = scope["dicom"]
        low, high = rules["age_years"]
        lines.append(
            "DICOM films are also held to their tags, where present: Modality "
            f"{' or '.join(rules['modalities'])}, BodyPartExamined "
            f"{' or '.join(rules['body_parts'])}, ViewPosition {' or '.join(rules['views'])} "
            f"and PatientAge {low} to {high} years (the training population); ingest "
            "quarantines films outside them."
        )
    return lines


def card_sections(card: dict[str, Any]) -> list[tuple[str, list[tuple]]]:
    """The card as (heading, blocks); a block is ("p", text), ("ul", items), ("table", header,
    rows) or ("img", key, caption). Both renderers walk this one structure."""
    m = card["metrics"]
    cal = card["calibration"]
    data = card["data"]
    split_rows = [[split, *counts.values()] for split, counts in data["splits"].items()]
    split_header = ["split", *next(iter(data["splits"].values())).keys()]
    shifts = card["shifts"]
    return [
        ("Model details", [("ul", [
            f"{card['model']} version {card['version']}: {card['architecture']}",
            f"Weights: {card['weights_source']}",
            f"Registered {card['created']} from MLflow run `{card['run_id']}`, code "
            f"`{card['git_commit']}`",
        ])]),
        ("Intended use", [("ul", [*INTENDED_USE, *scope_lines(card.get("scope"))])]),
        ("Training data", [
            ("p", f"Manifest `{data['manifest_id']}` (content digest); data validation: "
                  f"{data['gx_result']}. Splits are carved by patient: no patient is in two."),
            ("table", split_header, split_rows),
        ]),
        ("Metrics", [
            ("p", f"On the {data.get('judged_on', 'test split')} "
                  f"({data['splits']['test']['images']} films, "
                  f"{data['splits']['test']['patients']} patients), 95 % intervals by patient "
                  "bootstrap, at the served threshold:"),
            ("table", ["metric", "value [95 % CI]"],
             [[METRIC_LABELS[k], with_ci(m, k)] for k in INTERVAL_METRICS]),
            ("p", f"Threshold {card['threshold']['value']:.4f} ({card['threshold']['rule']}): "
                  f"{card['threshold']['why']}"),
        ]),
        *site_section(card.get("site_validation", [])),
        ("Calibration", [
            ("p", f"{cal['description']}, fitted on the validation split ({cal['why']}). On "
                  f"test: ECE {number(m.get('ece_uncalibrated'))} before, {number(m.get('ece'))} "
                  f"after; Brier {number(m.get('brier_uncalibrated'))} before, "
                  f"{number(m.get('brier'))} after. Probabilities hold for the validation "
                  f"split's prevalence ({cal['val_prevalence']:.0%} pneumonia); at another "
                  "prevalence they shift."),
            ("img", "reliability", "Reliability diagram on the test split"),
        ]),
        ("Gate and approval", [("ul", [
            f"Gate: {'PASS' if card['gate']['passed'] else 'FAIL'}",
            *card["gate"]["reasons"],
            *approval_lines(card["approval"]),
        ])]),
        ("Subgroups", [
            ("p", "Per pneumonia subtype and per acquisition bucket the manifest knows (n: "
                  "films; specificity is undefined where a group has no normal films):"),
            ("table", ["grouping", "group", "n", "AUC", "sensitivity", "specificity"],
             [[g["grouping"], g["group"], g["n"], with_ci(g, "roc_auc"),
               with_ci(g, "sensitivity"), with_ci(g, "specificity")] for g in card["subgroups"]]),
        ]),
        ("Grad-CAM examples", [
            ("img", "gradcam", "Right and wrong test predictions per class, with Grad-CAM"),
        ]),
        ("Limitations and known failure modes", [
            ("p", "Each acquisition shift the drift monitoring simulates, applied to the same "
                  f"{shifts[0]['n'] if shifts else 0} test films, at the served threshold:"),
            ("table", ["shift", "AUC", "sensitivity", "specificity", "mean probability"],
             [[s["shift"], number(s["roc_auc"]), number(s["sensitivity"]),
               number(s["specificity"]), number(s["mean_probability"])] for s in shifts]),
            ("ul", [
                *failure_modes(shifts),
                "One hospital, one population (children aged 1 to 5): no evidence for other "
                "scanners, ages or hospitals.",
                "Labels are the dataset's (graded by two physicians, a third for the test set); "
                "label noise caps the measurable accuracy.",
            ]),
        ]),
        ("Ethical considerations", [("ul", ETHICS)]),
    ]  # fmt: skip


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown; images are the run's evaluation artifacts, linked by name."""
    lines = [f"# Model card: {card['model']} v{card['version']}"]
    for heading, blocks in card_sections(card):
        lines += ["", f"## {heading}"]
        for block in blocks:
            if block[0] == "p":
                lines += ["", block[1]]
            elif block[0] == "ul":
                lines += ["", *(f"- {item}" for item in block[1])]
            elif block[0] == "table":
                lines += ["", "| " + " | ".join(map(str, block[1])) + " |"]
                lines += ["|" + " --- |" * len(block[1])]
                lines += ["| " + " | ".join(map(str, row)) + " |" for row in block[2]]
            else:
                lines += ["", f"![{block[2]}](../evaluation/{IMAGES[block[1]]})"]
    return "\n".join(lines) + "\n"


def render_html(card: dict[str, Any], images: dict[str, bytes]) -> str:
    """The card as one self-contained HTML page: images inlined, no external resources."""

    def inline(text: str) -> str:
        escaped = html.escape(str(text))
        parts = escaped.split("**")  # the only markup the card's text uses, with `code`
        escaped = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
        parts = escaped.split("`")
        return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

    body = [f"<h1>Model card: {inline(card['model'])} v{inline(card['version'])}</h1>"]
    for heading, blocks in card_sections(card):
        body.append(f"<h2>{inline(heading)}</h2>")
        for block in blocks:
            if block[0] == "p":
                body.append(f"<p>{inline(block[1])}</p>")
            elif block[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block[1]) + "</ul>")
            elif block[0] == "table":
                head = "".join(f"<th>{inline(h)}</th>" for h in block[1])
                rows = "".join(
                    "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                    for row in block[2]
                )
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif block[1] in images:
                data = base64.b64encode(images[block[1]]).decode()
                body.append(
                    f'<figure><img alt="{inline(block[2])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{inline(block[2])}</figcaption></figure>"
                )
            else:
                body.append(f"<p>({inline(block[2])}: not available)</p>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:"
        ".2rem .5rem;text-align:left}img{max-width:100%}code{background:#f3f3f3}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Model card: {inline(card['model'])} v{inline(card['version'])}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_card(card: dict[str, Any], images: dict[str, bytes], folder: Path) -> list[Path]:
    """model_card.json, .md and .html in `folder`; returns their paths."""
    paths = [folder / name for name in CARD_FILES]
    write_atomic(paths[0], json.dumps(card, indent=2, default=str))
    write_atomic(paths[1], render_markdown(card))
    write_atomic(paths[2], render_html(card, images))
    return paths


def log_card(
    registry: Registry, run_id: str, card: dict[str, Any], images: dict[str, bytes], folder: Path
) -> str:
    """Write the card into `folder` and store it with the run (`model_card/`); its HTML's URI.
    Storing again replaces the stored card (an approval re-renders it)."""
    uris = [
        registry.log_run_artifact(run_id, path, CARD_DIR)
        for path in write_card(card, images, folder)
    ]
    return uris[-1]


def read_stored_card(registry: Registry, run_id: str, kind: str) -> str:
    """A run's stored card as `kind` (json, md or html); FileNotFoundError if it has none."""
    return registry.read_run_file(run_id, f"{CARD_DIR}/model_card.{kind}").decode()


def read_version_card(
    registry: Registry, model: str, version: str | None, kind: str
) -> tuple[str, str]:
    """The card of MODEL VERSION (default: the champion) as `kind`, and that version;
    FileNotFoundError if it has none."""
    found = registry.version(model, version) if version else registry.require_alias(model)
    return str(found.version), read_stored_card(registry, found.run_id, kind)


def write_card_page(html: str, folder: Path, model: str, version: str) -> Path:
    """The self-contained HTML card as a local file a browser can open."""
    path = folder / "cards" / f"{model}-v{version}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path


def update_card(registry: Registry, run_id: str, change: Callable[[dict], None]) -> None:
    """Re-render a version's stored card after `change` edits its JSON in place (an approval,
    a site acceptance); the figures are the run's own evaluation artifacts."""
    card = json.loads(read_stored_card(registry, run_id, "json"))
    change(card)
    images = {}
    for key, name in IMAGES.items():
        try:
            images[key] = registry.read_run_file(run_id, f"evaluation/{name}")
        except FileNotFoundError:
            continue  # the card says the figure is not available
    with tempfile.TemporaryDirectory() as tmp:
        log_card(registry, run_id, card, images, Path(tmp))


def threshold_why(cfg: ThresholdConfig) -> str:
    if cfg.rule == "target_sensitivity":
        return (
            f"the highest threshold reaching sensitivity {cfg.target_sensitivity:.2f} on the "
            "validation split, on the calibrated scale. Missing pneumonia costs more than a "
            "second look at a normal film, and the margin over the 0.95 goal covers the gap "
            "between validation and new films."
        )
    return "maximises sensitivity + specificity - 1 (Youden's J) on the validation split."


def calibration_entry(calibration: Calibration, val_labels: np.ndarray) -> dict[str, Any]:
    return {
        "description": calibration.describe(),
        "why": calibration.why,
        "cross_validated_ece": calibration.cv_ece,
        "val_prevalence": float(np.mean(val_labels)) if len(val_labels) else float("nan"),
    }
