"""Fine-tune, versions and export tabs, all against the REST API.

A job is started with ``POST /projects/{id}/jobs`` and followed through its server-sent events
(``GET /jobs/{id}/events``): each event updates the progress bar and the loss/metric curve; the stream
ends at a terminal state, after which the new version's metrics are shown beside its base version's.
Without a worker process jobs stay ``queued`` (the job's ``note`` says so) and can still be cancelled.
"""

import html
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from .common import Shared, need_project, ui_errors

TERMINAL = ("succeeded", "failed", "cancelled")
CURVE_COLUMNS = ["step", "value", "series"]


def progress_html(job: dict[str, Any]) -> str:
    """A progress bar with step, ETA and state, readable without JavaScript."""
    p = job.get("progress") or {}
    step, total = p.get("step") or 0, p.get("total") or job["params"].get("steps") or 0
    frac = min(1.0, step / total) if total else (1.0 if job["state"] == "succeeded" else 0.0)
    eta = f" · ETA {p['eta_s']:.0f} s" if p.get("eta_s") is not None and job["state"] == "running" else ""
    colour = {"failed": "#c0392b", "cancelled": "#7f8c8d", "succeeded": "#27ae60"}.get(job["state"], "#2980b9")
    note = f"<div style='color:#888'>{html.escape(job['note'])}</div>" if job.get("note") else ""
    msg = f"<div>{html.escape(p['message'])}</div>" if p.get("message") else ""
    err = f"<div style='color:#c0392b'>{html.escape(job['error'])}</div>" if job.get("error") else ""
    return (f"<div id='job-progress' data-state='{job['state']}'><b>Job {job['id']}: {job['state']}</b>"
            f"{' (cancel requested)' if job.get('cancel_requested') and job['state'] not in TERMINAL else ''}"
            f" · step {step}/{total}{eta}"
            f"<div style='background:#ddd;border-radius:4px;height:14px;margin:6px 0'>"
            f"<div style='background:{colour};width:{100 * frac:.1f}%;height:14px;border-radius:4px'></div></div>"
            f"{msg}{note}{err}</div>")


def curve_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per loss term and metric at the job's current step."""
    p = job.get("progress") or {}
    if p.get("step") is None:
        return []
    rows = [{"step": p["step"], "value": float(v), "series": f"loss {k}"} for k, v in (p.get("loss") or {}).items()]
    rows += [{"step": p["step"], "value": float(v), "series": f"val {k}"} for k, v in (p.get("metric") or {}).items()]
    return rows


def versions_table(models: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for m in sorted(models, key=lambda m: -m["version"]):
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m["metrics"].items()
                            if not isinstance(v, dict | list))
        source = m["provenance"].get("source") or m["provenance"].get("kind") or ""
        parent = f"v{m['parent_version']}" if m["parent_version"] else ""
        rows.append({"version": m["version"], "active": "●" if m["active"] else "", "from": parent,
                     "job": str(m["job_id"] or ""), "source": source, "metrics": metrics,
                     "created": m["created_at"][:19]})
    return pd.DataFrame(rows, columns=["version", "active", "from", "job", "source", "metrics", "created"])


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


def compare_md(models: list[dict[str, Any]], job: dict[str, Any] | None) -> str:
    """The finished job's new version beside the old one. Prefers the worker's own comparison on the
    held-out labels (``job.result``: both models on the same pixels); else the versions' stored metrics."""
    if not job or job["state"] != "succeeded" or not job.get("result_version"):
        return ""
    by = {m["version"]: m for m in models}
    new = by.get(job["result_version"])
    if new is None:
        return ""
    res = job.get("result") or {}
    if res.get("candidate") or res.get("active"):
        old_v, old_m, new_m = res.get("compared_with"), res.get("active") or {}, res.get("candidate") or {}
    else:
        old = by.get(job.get("base_version") or -1)
        old_v, old_m, new_m = (old or {}).get("version"), (old or {}).get("metrics", {}), new["metrics"]
    keys = sorted({k for m in (old_m, new_m) for k, v in m.items() if isinstance(v, int | float)})
    head = f"| metric | v{old_v if old_v else '?'} (old) | v{new['version']} (new) |\n|---|---|---|\n"
    lines = [f"| {k} | {_fmt(old_m.get(k))} | {_fmt(new_m.get(k))} |" for k in keys]
    act = "active" if new["active"] else "not active (promote it below if it is better)"
    why = f" {res['reason']}" if res.get("reason") else ""
    return f"**Job {job['id']} produced v{new['version']}**, now {act}.{why}\n\n" + head + "\n".join(lines)


def build(ui: Shared) -> None:
    with gr.Tab("Fine-tune & versions", id="tab-learn"):
        gr.Markdown("Fine-tune the project's model on its saved labels (partial cross-entropy + the affinity loss). "
                    "Jobs run in the worker; the curve shows loss terms and held-out metrics as they arrive.")
        with gr.Row():
            base = gr.Dropdown(label="Base version (default: active)", choices=[], elem_id="base-version")
            steps = gr.Number(label="Steps", value=300, precision=0, minimum=1, maximum=200_000, elem_id="ft-steps")
            budget = gr.Number(label="Time budget (s, 0 = none)", value=0, precision=0, minimum=0, visible=False,
                               elem_id="ft-budget")
            kind = gr.Radio(label="Labels are mostly", choices=["scribbles", "points"], value="scribbles")
            promote = gr.Radio(label="Promote the result", choices=["if_better", "always", "never"],
                               value="if_better")
        with gr.Row():
            start_btn = gr.Button("Start fine-tune", variant="primary", elem_id="start-job")
            cancel_btn = gr.Button("Cancel job", variant="stop", elem_id="cancel-job")
        job_html = gr.HTML(elem_id="job-status")
        curve = gr.LinePlot(pd.DataFrame(columns=CURVE_COLUMNS), x="step", y="value", color="series",
                            title="Loss and validation metric", height=280, elem_id="job-curve")
        compare = gr.Markdown(elem_id="job-compare")
        gr.Markdown("### Model versions")
        versions = gr.Dataframe(interactive=False, elem_id="versions", wrap=True)
        with gr.Row():
            promote_v = gr.Dropdown(label="Version", choices=[], elem_id="promote-version")
            promote_btn = gr.Button("Promote", elem_id="promote-btn")
            rollback_btn = gr.Button("Roll back last promotion", elem_id="rollback-btn")
            refresh_btn = gr.Button("Refresh")
    with gr.Tab("Export", id="tab-export"):
        gr.Markdown("Masks come from the active model version; labels are your saved scribbles and points "
                    "(latest revision of every image, with the full revision history in labels.json).")
        with gr.Row():
            masks_btn = gr.Button("Masks (PNG, zip)", elem_id="export-masks")
            coco_btn = gr.Button("Masks (COCO JSON)", elem_id="export-coco")
            coco_labels_btn = gr.Button("Labels (COCO JSON)", elem_id="export-coco-labels")
            labels_btn = gr.Button("Labels (PNG + history, zip)", elem_id="export-labels")
        export_file = gr.File(label="Download", interactive=False, elem_id="export-file")
    job_id = gr.State(None)
    rows = gr.State([])
    ui.extra.update(versions=versions, base=base, promote_v=promote_v, budget=budget)

    def model_updates(models: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
        nums = [m["version"] for m in sorted(models, key=lambda m: -m["version"])]
        active = next((m["version"] for m in models if m["active"]), None)
        return (versions_table(models), gr.update(choices=[("active", 0)] + [(f"v{n}", n) for n in nums], value=0),
                gr.update(choices=[(f"v{n}", n) for n in nums], value=active))

    @ui_errors
    def refresh(project: dict[str, Any] | None, request: gr.Request) -> tuple[Any, Any, Any]:
        if not project:
            return pd.DataFrame(), gr.update(choices=[]), gr.update(choices=[])
        with ui.client(request) as c:
            return model_updates(c.models(project["id"]))

    ui.extra["refresh_models"] = refresh
    refresh_btn.click(refresh, [ui.project], [versions, base, promote_v])

    @ui_errors
    def start(project: dict[str, Any] | None, base_v: int | None, n_steps: float, budget_s: float, ann: str,
              policy: str, request: gr.Request) -> tuple[Any, ...]:
        project = need_project(project)
        params: dict[str, Any] = {"steps": int(n_steps), "annotation": ann, "promote": policy}
        if base_v:
            params["base_version"] = int(base_v)
        with ui.client(request) as c:
            if budget_s and "time_budget_s" in c.job_create_fields():
                params["time_budget_s"] = float(budget_s)
            job = c.create_job(project["id"], params)
        return job["id"], [], progress_html(job), pd.DataFrame(columns=CURVE_COLUMNS), ""

    @ui_errors
    def watch(jid: int | None, project: dict[str, Any] | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """Follow the job's SSE stream; every event redraws the bar and extends the curve."""
        if not jid:
            return
        acc: list[dict[str, Any]] = []
        seen: set[tuple[int, str]] = set()
        last: dict[str, Any] | None = None
        with ui.client(request) as c:
            for job in c.job_events(int(jid)):
                last = job
                for r in curve_rows(job):
                    if (r["step"], r["series"]) not in seen:
                        seen.add((r["step"], r["series"]))
                        acc.append(r)
                yield progress_html(job), pd.DataFrame(acc, columns=CURVE_COLUMNS), gr.update(), gr.update()
            if last is not None and last["state"] in TERMINAL and project:
                models = c.models(project["id"])
                yield progress_html(last), pd.DataFrame(acc, columns=CURVE_COLUMNS), compare_md(models, last), \
                    versions_table(models)

    start_btn.click(start, [ui.project, base, steps, budget, kind, promote], [job_id, rows, job_html, curve, compare]
                    ).success(watch, [job_id, ui.project], [job_html, curve, compare, versions],
                              concurrency_limit=None)

    @ui_errors
    def cancel(jid: int | None, request: gr.Request) -> str:
        if not jid:
            raise gr.Error("No job started from this page yet.")
        with ui.client(request) as c:
            job = c.cancel_job(int(jid))
        return progress_html(job)

    cancel_btn.click(cancel, [job_id], [job_html])

    @ui_errors
    def do_promote(project: dict[str, Any] | None, v: int | None, request: gr.Request) -> tuple[Any, ...]:
        project = need_project(project)
        if not v:
            raise gr.Error("Choose a version to promote.")
        with ui.client(request) as c:
            c.promote(project["id"], int(v))
            out = model_updates(c.models(project["id"]))
        gr.Info(f"v{v} is now served.")
        return out

    @ui_errors
    def do_rollback(project: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
        project = need_project(project)
        with ui.client(request) as c:
            c.rollback(project["id"])
            out = model_updates(c.models(project["id"]))
        gr.Info("Rolled back the last promotion.")
        return out

    promote_btn.click(do_promote, [ui.project, promote_v], [versions, base, promote_v])
    rollback_btn.click(do_rollback, [ui.project], [versions, base, promote_v])

    def exporter(what: str, source: str = "prediction") -> Any:
        @ui_errors
        def run(project: dict[str, Any] | None, request: gr.Request) -> str:
            project = need_project(project)
            with ui.client(request) as c:
                name, data = c.export(project["id"], what, source)
            folder = tempfile.mkdtemp(prefix="sasformer-export-")
            stem, ext = os.path.splitext(name)
            path = os.path.join(folder, f"{project['name'].replace(' ', '_')}-{stem}"
                                f"{'-' + source if what == 'coco.json' else ''}{ext}")
            with open(path, "wb") as f:
                f.write(data)
            return path
        return run

    masks_btn.click(exporter("masks.zip"), [ui.project], [export_file])
    coco_btn.click(exporter("coco.json", "prediction"), [ui.project], [export_file])
    coco_labels_btn.click(exporter("coco.json", "labels"), [ui.project], [export_file])
    labels_btn.click(exporter("labels.zip"), [ui.project], [export_file])


def job_fields_visible(fields: set[str]) -> Any:
    """Show the time budget only when the server's JobCreate accepts one."""
    return gr.update(visible="time_budget_s" in fields)


__all__ = ["build", "job_fields_visible"]
