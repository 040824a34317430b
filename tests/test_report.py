"""The HTML report on a real tiny sweep's runs folder: one self-contained page, every plot a valid PNG,
unfinished / untested / single experiments, escaping, the empty-folder error, and what Chromium draws.
With repeats (seeds): the per-group summary, interval plots, and learning curves drawn per group."""

from __future__ import annotations

import ast
import base64
import io
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from PIL import Image

from raytrain import results
from raytrain.errors import UserError
from raytrain.report import figures, html_tables, knob_figures
from raytrain.report import page as report_page
from raytrain.results import analysis
from tests.conftest import PROJECT_ROOT, write_config

EXPERIMENTS = ("alpha", "beta", "gamma")
HEADINGS = (
    "Leaderboard",
    "Learning curves",
    "Per-class F1 (val)",
    "Confusion matrices",
    "Hyperparameters vs val macro F1",
)
GROUPS, SEEDS = ("base", "fast"), (1, 2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_INSTALL = "apt-get install -y chromium"


@pytest.fixture(scope="module")
def runs(tiny_runs) -> Path:
    """Three tiny configs (lr, epochs and loss differ) run to the end as one real sweep."""
    return tiny_runs


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> Path:
    return report_page.write_report(runs, tmp_path_factory.mktemp("out") / "report.html")


@pytest.fixture(scope="module")
def repeated_runs(ray_session, synthetic_root, tmp_path_factory) -> Path:
    """Two tiny configs (lr and epochs differ), each repeated over seeds 1 and 2: four trials in one
    real sweep. base runs 2 epochs so its curve is a line with a band, not a point."""
    from raytrain.cli import main

    root = tmp_path_factory.mktemp("repeats")
    configs = root / "configs"
    write_config(configs, "base", training="epochs: 2, batch_size: 16", other="seed: [1, 2], workers: 1")
    write_config(configs, "fast", training="epochs: 1, batch_size: 16, lr: 0.006", other="seed: [1, 2], workers: 1")
    runs = root / "runs"
    assert main(["sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"]) == 0
    return runs


@pytest.fixture(scope="module")
def repeats_page(repeated_runs, tmp_path_factory) -> Path:
    return report_page.write_report(repeated_runs, tmp_path_factory.mktemp("repeats_out") / "report.html")


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def mattered_section(html: str) -> str:
    """The page's What mattered section (report.importance_figures)."""
    start = html.index('<section id="mattered">')
    return html[start : html.index("</section>", start)]


def embedded_png(html: str, alt: str) -> bytes:
    """The one inline PNG whose alt text is `alt`."""
    found = re.findall(rf'src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="{re.escape(alt)}"', html)
    assert len(found) == 1, f"{len(found)} images with alt {alt!r}"
    return base64.b64decode(found[0])


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG format puts right after the signature."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_report_is_one_self_contained_page_with_every_experiment(page):
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.IGNORECASE), (
        "nothing may load from the network"
    )
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert html.count('<img src="data:image/png;base64,') >= 4
    for name in EXPERIMENTS:
        assert f"<td>{name}" in html, f"{name} has no leaderboard row"
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in html
    assert "<th>training.lr</th>" in html and "<th>loss.type</th>" in html, "the varying hyperparameters are columns"
    assert "<th>test macro F1</th>" in html, "the synthetic data has a test split, so test metrics are shown"
    assert html.count('class="best"') == 1
    assert "over seeds" not in html and 'id="intervals"' not in html, "no repeats, so no group summary or intervals"


def test_every_embedded_plot_is_a_real_png_of_a_sensible_size(page):
    html = page.read_text(encoding="utf-8")
    pngs = embedded_pngs(html)
    # curves and one plot per varying hyperparameter (lr, epochs, loss); What mattered's own are counted
    # in tests/test_importance.py (three runs of two knobs are too few for it to draw any)
    assert len(pngs) - len(embedded_pngs(mattered_section(html))) == 4
    for data in pngs:
        width, height = png_size(data)
        assert 250 <= width <= 2500 and 200 <= height <= 2500, (width, height)


def test_unfinished_and_untested_experiments_are_reported_not_fatal(runs, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    # gamma's folder gone but its Tune trial still there: what a sweep looks like while gamma is running
    shutil.rmtree(copy / "gamma")
    for test_file in copy.glob("*/test_metrics.json"):
        test_file.unlink()
    html = report_page.write_report(copy, tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<p class="note">1 of 3 experiments is not finished: gamma (unfinished).' in html
    assert "<td>unfinished</td>" in html and "gamma" in html
    assert "The best 2 finished experiments" in html, "no confusion matrix for the unfinished one"
    assert "test macro F1" not in html, "no test column when no experiment was evaluated on test"


def test_a_single_experiment_still_gets_a_page(runs, tmp_path):
    single = tmp_path / "runs"
    shutil.copytree(runs / "alpha", single / "alpha")
    html = report_page.write_report(single, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Only one experiment: there is nothing to compare it with." in html
    assert "1 experiment &middot;" in html and "not finished" not in html
    assert len(embedded_pngs(html)) == 1, "the learning curves; per-class F1 and the confusion matrix are tables"
    assert html.count('<table class="heat"') == 2


def test_an_empty_runs_folder_says_to_run_a_sweep_first(tmp_path):
    empty = tmp_path / "runs"
    empty.mkdir()
    with pytest.raises(report_page.ReportError, match="no experiments to report on") as err:
        report_page.write_report(empty, tmp_path / "report.html")
    assert str(empty) in str(err.value) and "run a sweep first" in str(err.value)
    assert isinstance(err.value, UserError), "the CLI turns UserError into exit code 2"
    with pytest.raises(report_page.ReportError, match="no such folder"):
        report_page.write_report(tmp_path / "missing", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_past_top_rows_the_leaderboard_counts_the_rest_and_the_csv_beside_it_has_them_all(runs, tmp_path, run_cli):
    result = run_cli("report", "--runs-dir", runs, "--out", tmp_path / "page.html", "--top", "2", "--detail", "1")
    assert result.code == 0, result.err
    html = (tmp_path / "page.html").read_text(encoding="utf-8")
    leaderboard = html[html.index('<section id="leaderboard">') : html.index('<section id="curves">')]
    assert leaderboard.count("<tr") == 3, "a header and the best 2 rows"
    assert '<p class="more">and 1 more experiments (all in <code>page.csv</code>, beside this page)</p>' in leaderboard
    frame = results.load(runs)
    best_two, third = list(frame["experiment"][:2]), frame["experiment"].iloc[2]
    assert all(f"<td>{name}" in leaderboard for name in best_two) and f"<td>{third}" not in leaderboard
    exported = pd.read_csv(tmp_path / "page.csv")
    assert list(exported["experiment"]) == list(frame["experiment"]), "every row, in the page's order"
    assert {"training.lr", "val/f1/happy", "test/macro_f1"} <= set(exported.columns)
    assert "Drawn for the best 1 of 3 experiments" in html, "learning curves for --detail experiments only"
    assert "The best 1 finished experiment by val macro F1" in html


def test_a_search_of_hundreds_of_trials_gets_one_panel_per_searched_knob_with_the_best_starred():
    rng = np.random.default_rng(0)
    lr = np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), 300))
    frame = pd.DataFrame(
        {
            "experiment": [f"lr_search/t{i:03d}" for i in range(1, 301)],
            "status": ["completed"] * 250 + ["pruned"] * 50,
            "training.lr": lr,
            "loss.type": rng.choice(["ce", "focal"], 300),
            "model.arch": "resnet18",
            "val/macro_f1": 0.6 * np.exp(-((np.log10(lr) + 3) ** 2) / 4) + rng.normal(0, 0.01, 300),
        }
    )
    html = knob_figures.search_knobs_html(frame)
    best = frame.loc[frame["val/macro_f1"].idxmax(), "experiment"]
    assert f"The gold star is the best, {best}" in html and "300 trials" in html
    fig = knob_figures.search_knobs_figure(frame, ["loss.type", "training.lr"], "lr_search")
    assert [ax.get_xlabel() for ax in fig.axes] == ["loss.type", "training.lr"], (
        "one panel per searched knob, not model.arch"
    )
    assert fig.axes[1].get_xscale() == "log"
    for ax in fig.axes:
        stars = [c for c in ax.collections if c.get_label() == "best"]
        assert len(stars) == 1 and stars[0].get_offsets()[0][1] == pytest.approx(frame["val/macro_f1"].max())
    width, height = png_size(embedded_png(html, "lr_search: val macro F1 against each searched knob"))
    assert width <= 1300 and height <= 500, "small multiples side by side, not a page per knob"


def heat_rows(table: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """A heat table's body as (row header, [(cell text, background colour or None for a missing value)])."""
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    cell = re.compile(r'<td(?: style="background:(#[0-9a-f]{6});color:#[0-9a-f]{3}"| class="missing")>([^<]*)</td>')
    return [
        (head, [(text, colour or None) for colour, text in cell.findall(cells)])
        for head, cells in re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", body)
    ]


def luminance(colour: str) -> float:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * red + 0.587 * green + 0.114 * blue


def test_confusion_matrices_are_tables_normalised_by_row_with_each_class_support(runs, page):
    html = page.read_text(encoding="utf-8")
    section = html[html.index('<section id="confusion">') : html.index('<section id="hyperparameters">')]
    frame = results.load(runs)
    for name in frame["experiment"]:
        matrix = np.load(runs / name / "best_confusion_matrix.npy").astype(float)
        classes = json.loads((runs / name / "best_metrics.json").read_text())["class_names"]
        start = section.index(f"<figcaption>{name}: epoch ")
        rows = heat_rows(section[start : section.index("</figure>", start)])
        support = matrix.sum(axis=1)
        assert [head for head, _ in rows] == [f"{c} (n={int(n)})" for c, n in zip(classes, support)]
        shown = np.array([[float(text) for text, _ in cells] for _, cells in rows])
        np.testing.assert_allclose(shown, matrix / np.maximum(support, 1)[:, None], atol=0.005)
        # Blues: the larger the share, the darker the cell
        by_value = sorted((float(text), luminance(colour)) for _, cells in rows for text, colour in cells)
        assert all(a[1] >= b[1] for a, b in zip(by_value, by_value[1:]) if a[0] < b[0])


def test_per_class_f1_is_a_table_in_leaderboard_order_with_missing_classes_grey():
    frame = pd.DataFrame(
        {
            "experiment": ["good", "half"],
            "val/f1/happy": [0.9, 0.4],
            "val/f1/sad": [0.7, np.nan],
        }
    )
    html = html_tables.per_class_html(frame, total=5)
    assert heat_rows(html) == [
        ("good", [("0.90", ANY_COLOUR), ("0.70", ANY_COLOUR)]),
        ("half", [("0.40", ANY_COLOUR), ("–", None)]),
    ]
    assert "The best 2 of 5 experiments" in html
    assert "<img" not in html


class _AnyColour:
    def __eq__(self, other) -> bool:
        return isinstance(other, str) and re.fullmatch("#[0-9a-f]{6}", other) is not None


ANY_COLOUR = _AnyColour()


def cut_off(fig) -> list[str]:
    """What of the figure's axes (ticks, labels, titles) and titles is drawn past its edges."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [(ax.get_xlabel(), ax.get_tightbbox(renderer)) for ax in fig.axes if ax.axison]
    boxes += [(text.get_text(), text.get_window_extent(renderer)) for text in fig.texts]
    edge = fig.bbox
    return [what for what, box in boxes if box.x0 < -1 or box.y0 < -1 or box.x1 > edge.x1 + 1 or box.y1 > edge.y1 + 1]


def big_search(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "experiment": [f"big/t{i:03d}" for i in range(1, n + 1)],
            "status": "completed",
            "training.lr": np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), n)),
            "training.batch_size": rng.choice([16, 64, 256], n),
            "model.dropout": rng.uniform(0.0, 0.5, n),
            "loss.type": rng.choice(["ce", "focal"], n),
            "val/macro_f1": rng.uniform(0.6101, 0.6399, n),
        }
    )


def test_plots_of_numbers_have_fixed_margins_that_cut_nothing_off(monkeypatch):
    """Hundreds of points and numbers on both axes: the layout is set, not solved (twice as fast to
    draw), and still every tick label, axis label and title is inside the picture."""
    trials = big_search()
    numeric = knob_figures.search_knobs_figure(trials, ["training.lr", "training.batch_size", "model.dropout"], "big")
    assert numeric.get_layout_engine() is None
    assert cut_off(numeric) == []
    drawn = []
    monkeypatch.setattr(knob_figures, "img_tag", lambda fig, alt: drawn.append(fig) or "")
    knob_figures.hyperparameters_html(trials, ["training.lr", "training.batch_size", "model.dropout", "loss.type"])
    knob_figures.search_progress_html(trials)
    assert [fig.get_layout_engine() is None for fig in drawn] == [True, True, True, False, True], (
        "categories keep constrained layout"
    )
    for fig in drawn:
        assert cut_off(fig) == []


def test_plots_with_names_or_categories_keep_a_layout_that_fits_them():
    trials = big_search()
    trials["model.arch"] = np.where(np.arange(len(trials)) % 2, "mobilenet_v3_small_with_a_long_name", "resnet18")
    mixed = knob_figures.search_knobs_figure(
        trials, ["training.lr", "model.arch", "loss.type", "model.dropout", "training.batch_size"], "big"
    )
    assert mixed.get_layout_engine() is not None
    assert cut_off(mixed) == []
    few = big_search(8).assign(experiment=[f"a_rather_long_experiment_name_{i}" for i in range(8)])
    fig = knob_figures._numeric_plot(few, "training.lr", few["training.lr"])
    assert len(fig.axes[0].texts) == 8, "few points: each is named"
    assert fig.get_layout_engine() is not None and cut_off(fig) == []


def test_the_leaderboard_escapes_names_descriptions_and_values():
    frame = pd.DataFrame(
        [
            {
                "experiment": "a<b>",
                "status": "completed",
                "description": "<script>alert(1)</script>",
                "loss.type": "ce&<i>",
                "val/accuracy": 0.5,
                "val/macro_f1": 0.4,
                "best_epoch": 2,
                "epochs_run": 3,
                "duration_s": 75.0,
            },
            {
                "experiment": "plain",
                "status": "unfinished",
                "description": "",
                "loss.type": "focal",
                "val/accuracy": 0.6,
                "val/macro_f1": None,
                "best_epoch": 1,
                "epochs_run": 1,
                "duration_s": None,
            },
        ]
    )
    table = html_tables.leaderboard_html(frame, ["loss.type"])
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "a&lt;b&gt;" in table and "ce&amp;&lt;i&gt;" in table and "<i>" not in table
    assert "1 min 15 s" in table
    assert table.count('class="best"') == 1 and '<tr class="best"><td class="num">1</td><td>a&lt;b&gt;' in table


def test_wide_positive_ranges_get_a_log_axis():
    assert figures.use_log_axis([1e-4, 3e-4, 3e-3])  # a learning-rate search
    assert not figures.use_log_axis([64, 128, 256]), "4x is readable on a linear axis"
    assert not figures.use_log_axis([0.0, 0.01, 0.1]), "zero has no place on a log axis"


@pytest.mark.parametrize("module", sorted((PROJECT_ROOT / "raytrain" / "report").glob("*.py")), ids=lambda p: p.name)
def test_the_report_imports_no_torch_or_ray(module):
    tree = ast.parse(module.read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"torch", "ray"}


def chromium_screenshot(subprocesses, page: Path, folder: Path, height: int) -> Path:
    """Headless Chromium's 1200 px wide screenshot of `page` in `folder`; skips where Chromium is not
    installed. Shared by the report's checks and the What mattered section's (test_importance)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(f"Chromium is not installed; to run this check: {CHROMIUM_INSTALL}")
    shot = folder / "shot.png"
    subprocesses.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size=1200,{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return shot


@pytest.mark.parametrize("which", ["page", "repeats_page"])
def test_chromium_draws_the_plots(subprocesses, which, request, tmp_path):
    page = request.getfixturevalue(which)
    image = pytest.importorskip("PIL.Image")
    shot = chromium_screenshot(subprocesses, page, tmp_path, height=3000)
    assert shot.is_file(), "Chromium wrote no screenshot"
    assert png_size(shot.read_bytes())[0] == 1200
    with image.open(shot) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        pixels = np.asarray(rgb, dtype=int)
    assert colours is not None and len(colours) > 50, f"{len(colours or [])} colours: is the page blank?"
    # Text and tables are grey on white: measured, the same page with its <img> tags removed has 0.08% of
    # its pixels strongly coloured; the heatmaps, confusion matrices and curves bring that to ~7%.
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 80).mean()
    assert coloured > 0.01, f"only {coloured:.2%} of the screenshot is coloured: are the plots drawn?"


# --- repeats ------------------------------------------------------------------------------------------


def test_with_repeats_the_leaderboard_summarises_each_group_over_its_seeds(repeated_runs, repeats_page):
    html = repeats_page.read_text(encoding="utf-8")
    assert "<h2>Mean and 95% interval over seeds</h2>" in html and '<a href="#intervals">' in html
    assert "4 experiments in 2 groups of seeds" in html
    assert html.index("Groups, over their seeds") < html.index("Every run"), "the group summary comes first"
    summary = analysis.summarize_repeats(results.load(repeated_runs)).set_index("group")
    for group in GROUPS:
        row = re.search(rf'<tr[^>]*><td class="num">\d</td><td>{group}</td><td class="num">2</td>.*?</tr>', html)
        assert row, f"{group} has no group row with n=2"
        mean, std = summary.loc[group, "macro_f1/mean"], summary.loc[group, "macro_f1/std"]
        assert f"{mean:.3f} ± {std:.3f}" in row.group(0)
        low, high = summary.loc[group, "macro_f1/low"], summary.loc[group, "macro_f1/high"]
        assert f"[{low:.3f}, {high:.3f}]" in row.group(0), "the table gives the t interval as computed, uncut"
        for seed in SEEDS:
            assert f"<td>{group}/seed-{seed}" in html, "every run still has its own row"
    assert "<th>training.lr</th>" in html


def test_with_repeats_every_plot_decodes_and_the_intervals_sit_side_by_side(repeats_page):
    html = repeats_page.read_text(encoding="utf-8")
    # intervals, curves, training.lr and training.epochs (the seed varies too, but it is the repeat axis,
    # not a hyperparameter); What mattered's own are checked in tests/test_importance.py
    assert len(embedded_pngs(html)) - len(embedded_pngs(mattered_section(html))) == 4
    for data in embedded_pngs(html):
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes every pixel, not just the header
            assert 250 <= img.width <= 2500 and 200 <= img.height <= 2500, img.size
    intervals = embedded_png(html, "val macro F1 and accuracy by experiment, mean and 95% interval over seeds")
    width, height = png_size(intervals)
    assert width == 1200 and height < 600, "two groups: macro F1 and accuracy side by side, not stacked"
    embedded_png(html, "learning curves, mean over seeds")
    for column in ("training.lr", "training.epochs"):
        embedded_png(html, f"val macro F1 against {column}, mean over seeds")
    assert "against other.seed" not in html
    assert "min–max" in html, "the caption says what the band around each group's curve is"


def test_with_repeats_the_learning_curves_draw_one_mean_line_and_band_per_group(repeated_runs):
    frame, history = results.load(repeated_runs), results.load_history(repeated_runs)
    fig = figures.group_curves_figure(frame, history)
    assert sorted(text.get_text() for text in fig.legends[0].get_texts()) == ["base (n=2)", "fast (n=2)"]
    f1_axes = fig.axes[0]
    lines = {line.get_label(): line for line in f1_axes.get_lines()}
    assert set(lines) == {"base (n=2)", "fast (n=2)"}, "one line per group, none per seed"
    assert len(f1_axes.collections) == 2, "one band per group"
    assert len(lines["base (n=2)"].get_xdata()) == 2, "base ran 2 epochs: its line has a point per epoch"
    for group in GROUPS:
        seeds = history[history["experiment"].str.startswith(f"{group}/seed-")]
        by_epoch = seeds.groupby("epoch")["val/macro_f1"]
        line = lines[f"{group} (n=2)"]
        np.testing.assert_allclose(
            line.get_ydata(), by_epoch.mean().to_numpy(), err_msg=f"{group}: the mean over seeds"
        )
    bands = sorted(
        (c.get_paths()[0].vertices[:, 1].min(), c.get_paths()[0].vertices[:, 1].max()) for c in f1_axes.collections
    )
    expected = sorted(
        (seeds["val/macro_f1"].min(), seeds["val/macro_f1"].max())
        for _, seeds in history.groupby(history["experiment"].str.split("/seed-").str[0])
    )
    np.testing.assert_allclose(bands, expected, err_msg="each band runs from the group's lowest seed to its highest")


def test_interval_bars_are_cut_at_0_and_1_and_a_single_seed_has_none():
    # three seeds far apart: the 95% t interval (t = 4.30 for 2 degrees of freedom) runs below 0
    frame = pd.DataFrame(
        [
            {
                "experiment": f"wide/seed-{s}",
                "group": "wide",
                "status": "completed",
                "val/macro_f1": f1,
                "val/accuracy": 0.5,
            }
            for s, f1 in enumerate([0.0, 0.02, 0.4], start=1)
        ]
        + [{"experiment": "solo", "group": "solo", "status": "completed", "val/macro_f1": 0.3, "val/accuracy": 0.4}]
    )
    summary = figures.group_summary(frame)
    assert summary.set_index("group").loc["wide", "macro_f1/low"] < 0
    fig, clipped = figures.intervals_figure(frame, summary)
    assert clipped
    bars = [segment for c in fig.axes[0].collections if isinstance(c, LineCollection) for segment in c.get_segments()]
    assert len(bars) == 1, "a bar for the three seeds, none for the single one"
    assert bars[0][:, 1].min() == 0.0
    html = figures.intervals_html(frame, summary)
    assert "drawn cut at 0 or 1" in html
    table = html_tables.group_table_html(frame, summary, [])
    assert "[-0." in table, "the table keeps the interval as computed"
    assert re.search(r'<td>solo</td><td class="num">1</td><td class="num">0.300 ± –</td><td class="num">–</td>', table)
