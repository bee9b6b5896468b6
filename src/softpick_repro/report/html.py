"""One self-contained HTML page a reader can follow: the verdicts first (one line each,
coloured), then the figures, then the tables with numbers rounded as the paper prints them,
the paper comparison filtered to its comparable rows (the full CSV linked), and the config
and software versions. Written by a rule, so no `snakemake --report` has to run inside a
running workflow; the captions are the same files `snakemake --report` uses
(workflow/report/<key>.rst), so the two reports never disagree.
"""
from __future__ import annotations

import base64
import html
import math
import os
import re
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from ..config import REPO_ROOT
from ..io import atomic_write_text, provenance

CAPTION_DIR = REPO_ROOT / "workflow" / "report"
GRID_FIGURES = {f"figure{n:02d}" for n in range(8, 20)}
VERDICT_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "not testable at this scale": "#9a6700",
                   "not measured": "#57606a"}
COLLAPSE_ROWS = 40   # tables longer than this start collapsed


def caption_key(stem: str) -> str:
    """The caption file of a table or figure: table01, figure03, grid (Figures 8-19), claims, ..."""
    match = re.match(r"(table\d\d|figure\d\d|paper_comparison|claims)", stem)
    key = match.group(1) if match else stem
    return "grid" if key in GRID_FIGURES else key


def caption_text(stem: str) -> str:
    path = CAPTION_DIR / f"{caption_key(stem)}.rst"
    return path.read_text().strip() if path.is_file() else stem


def caption_for(path: Path) -> str:
    return caption_text(Path(path).stem)


def _round(cell: str, decimals: int = 2) -> str:
    """Numbers as the paper prints them (2 decimals), values below 1 with 2 significant digits
    (a learning rate of 0.003 must not read 0.00); labels, integers, 'nan', 'a ± b' left alone."""
    try:
        value = float(cell)
    except ValueError:
        return cell
    if not math.isfinite(value) or re.fullmatch(r"[+-]?\d+", cell.strip()):
        return cell
    if value != 0 and abs(value) < 1:
        return f"{value:.2g}"
    return f"{value:.{decimals}f}"


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.map(_round).to_html(index=False, escape=True, border=0, classes="tbl")


def _table_html(csv_path: Path, max_rows: int = 400) -> str:
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    note = f"<p><em>first {max_rows} of {len(frame)} rows; see {csv_path.name}</em></p>" if len(frame) > max_rows else ""
    body = _frame_html(frame.head(max_rows)) + note
    if len(frame) > COLLAPSE_ROWS:
        body = f"<details><summary>{len(frame)} rows</summary>{body}</details>"
    return body


def _figure_html(png_path: Path) -> str:
    data = base64.b64encode(png_path.read_bytes()).decode()
    return f'<img alt="{html.escape(png_path.stem)}" src="data:image/png;base64,{data}">'


def _link(target: Path, out_path: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(out_path).resolve().parent)


def verdicts_html(claims_csv: Path) -> str:
    frame = pd.read_csv(claims_csv, dtype=str, keep_default_na=False)
    sizes = frame["sizes"].iloc[0] if "sizes" in frame and len(frame) else ""
    seeds = frame["seeds"].iloc[0] if "seeds" in frame and len(frame) else ""
    lines = [f"<p class='sizes'>Verdicts rest on the sizes {html.escape(sizes)}; seeds: {html.escape(seeds)}. "
             "<em>not testable at this scale</em>: the softmax baseline lacks what the claim compares "
             "against, so there is nothing to refute or confirm. Rules and the paper's words: docs/CLAIMS.md.</p>",
             "<ul class='verdicts'>"]
    for row in frame.itertuples():
        colour = VERDICT_COLOURS.get(row.verdict, "#57606a")
        margin = (f" <span class='margin' title='slack of the tightest check, in its unit'>margin "
                  f"{float(row.margin):+.3g}</span>" if row.margin and row.margin != "nan" else "")
        lines.append(f"<li><span class='badge' style='background:{colour}'>{html.escape(row.verdict)}</span> "
                     f"<b>{html.escape(row.claim)}.</b> {html.escape(row.statement)}{margin}"
                     f"<details><summary>evidence</summary><p>{html.escape(row.evidence)}</p></details></li>")
    return "\n".join(lines + ["</ul>"])


def comparison_html(csv_path: Path, out_path: Path) -> str:
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    comparable = frame[frame["comparable"].str.lower() == "true"]
    link = html.escape(_link(csv_path, out_path))
    head = (f"<p>{len(frame)} published values, {len(comparable)} comparable with this run (same model size "
            f"and protocol). The full comparison, every row with the reason it is or is not comparable: "
            f"<a href='{link}'>{html.escape(csv_path.name)}</a>.</p>")
    if comparable.empty:
        reasons = frame["reason"].value_counts().head(5)
        items = "".join(f"<li>{html.escape(r)}: {n} values</li>" for r, n in reasons.items())
        return head + f"<p>Why nothing is comparable (most common reasons):</p><ul>{items}</ul>"
    cols = ["table", "size", "arm", "task", "metric", "quant_method", "bits", "paper_value", "run_value",
            "abs_diff", "rel_diff"]
    return head + _frame_html(comparable[cols])


def write_report(tables: Iterable[str | Path], figures: Iterable[str | Path], config: dict,
                 out_path: str | Path, title: str) -> Path:
    """`tables`: CSV files (claims.csv and paper_comparison.csv among them); `figures`: PNG files."""
    tables, figures = sorted(map(Path, tables)), sorted(map(Path, figures))
    by_stem = {p.stem: p for p in tables}
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>Reproduction of <em>Softpick: No Attention Sink, No Massive Activations with Rectified "
             "Softmax</em> (arXiv 2504.20966). Every value below was measured by this run.</p>",
             "<nav><a href='#verdicts'>Verdicts</a> · <a href='#figures'>Figures</a> · "
             "<a href='#tables'>Tables</a> · <a href='#comparison'>Paper comparison</a> · "
             "<a href='#config'>Config</a></nav>"]
    if "claims" in by_stem:
        parts += ["<h2 id='verdicts'>Verdicts on the paper's claims</h2>", verdicts_html(by_stem["claims"])]
    parts.append("<h2 id='figures'>Figures</h2>")
    grids = [p for p in figures if caption_key(p.stem) == "grid"]
    for path in figures:
        if path in grids:
            continue
        parts.append(f'<h3 id="{path.stem}">{html.escape(path.stem)}</h3>'
                     f"<p>{html.escape(caption_for(path))}</p>{_figure_html(path)}")
    if grids:
        inner = "".join(f"<h4>{html.escape(p.stem)}</h4>{_figure_html(p)}" for p in grids)
        parts.append(f"<h3>Figures 8-19</h3><p>{html.escape(caption_text('figure08'))}</p>"
                     f"<details><summary>{len(grids)} attention-map grids</summary>{inner}</details>")
    parts.append("<h2 id='tables'>Tables</h2>")
    for path in tables:
        if path.stem in ("claims", "paper_comparison"):
            continue
        parts.append(f'<h3 id="{path.stem}">{html.escape(path.stem)}</h3>'
                     f"<p>{html.escape(caption_for(path))}</p>{_table_html(path)}")
    if "paper_comparison" in by_stem:
        parts += ["<h2 id='comparison'>Paper comparison</h2>", comparison_html(by_stem["paper_comparison"], out_path)]
    parts.append("<h2 id='config'>Config</h2><details><summary>the merged config of this run</summary><pre>"
                 + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre></details>")
    parts.append("<h2>Software</h2><details><summary>versions and provenance</summary><pre>"
                 + html.escape(yaml.safe_dump(provenance(config), sort_keys=False)) + "</pre></details>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;line-height:1.4}"
             "table.tbl{border-collapse:collapse;font-size:0.85em}"
             "table.tbl td,table.tbl th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "ul.verdicts{list-style:none;padding-left:0}ul.verdicts li{margin:0.4em 0}"
             ".badge{color:#fff;border-radius:4px;padding:1px 8px;font-size:0.85em;display:inline-block;"
             "min-width:12em;text-align:center}.margin{color:#57606a;font-size:0.85em}"
             "details summary{cursor:pointer;color:#0969da;font-size:0.9em}"
             "img{max-width:100%}pre{background:#f5f5f5;padding:1em;overflow:auto}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_text(out_path, page)
    return Path(out_path)
