"""Chapter 6 says nothing its own runs contradict.

Every outcome in chapter 6's prose is either a glued value chosen by the code from the runs of that execution
(verdicts from ``normbook.book.stats``), or a fixed sentence that holds only if certain results came out a certain
way. This test reads an executed copy of the chapter (see :func:`_load_executed`) and checks, claim by claim, that
each fixed sentence is still on the page and that the results backing it hold, that every glued verdict agrees
with the interval glued beside it, and that the chapter tunes on the validation split only. A new fixed outcome
sentence belongs in CLAIMS below.
"""
import ast
import json
import os
import re
from pathlib import Path

import pytest

from _notebook import chapter_path

SWEEPS = {"lr_sweep", "init_sweep", "e4_sweep"}


def _load_executed(tmp_path_factory) -> dict:
    """The executed notebook the claims are checked against: the committed chapter, whose outputs are those of
    its last, full-mode execution; or, with ``NORMBOOK_CLAIMS_EXECUTED=<notebook>``, another executed copy
    (``make claims-fast``, part of ``make test``, passes the FAST book build's,
    ``_build/fast/_build/jupyter_execute/chapters/06_*.ipynb``, with the glued values in the ``.glue.json`` beside
    it; it must have run the chapter's current code). The one place that decides which copy is read."""
    path = chapter_path("06")
    if os.environ.get("NORMBOOK_CLAIMS_EXECUTED"):
        copy = Path(os.environ["NORMBOOK_CLAIMS_EXECUTED"])
        assert copy.is_file(), f"no executed copy at {copy} (build it with `make book-fast`)"
        code, ran = ([_source(c) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code"]
                     for p in (path, copy))
        assert ran == code, f"{copy} ran other code than {path.name} has now: build it again"
        path = copy
    nb = json.loads(Path(path).read_text())
    glue_file = Path(path).with_suffix(".glue.json")  # myst-nb keeps a book build's glued outputs beside its copy
    if glue_file.is_file():
        nb["cells"].append({"cell_type": "code", "source": "", "metadata": {},
                            "outputs": list(json.loads(glue_file.read_text()).values())})
    return nb


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _glued(nb: dict) -> dict:
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                data = out.get("data", {})
                text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
                values[meta["name"]] = _value(text if isinstance(text, str) else "".join(text or []))
    return values


def _value(text: str):
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def _printed(nb: dict) -> dict:
    """Cell id -> the text the cell printed."""
    return {cell.get("id"): "".join("".join(o.get("text", "")) for o in cell.get("outputs", [])
                                    if o.get("output_type") == "stream" and o.get("name") == "stdout")
            for cell in nb["cells"] if cell["cell_type"] == "code"}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = _load_executed(tmp_path_factory)
    text = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    return text, _glued(nb), _printed(nb)


def _all_true(printed: str) -> bool:
    lines = [line for line in printed.splitlines() if line.strip()]
    return bool(lines) and all(line.rstrip().endswith("True") for line in lines)


def _range(text: str) -> tuple:
    low, high = (float(x) for x in text.split(" to "))
    return low, high


def _neff_per_example_steady(g) -> bool:
    """The effective values per example vary by less than 25 % between batch sizes 2, 8 and 32."""
    ranges = [_range(g[f"ch6_neff_{k}_per_example_range"]) for k in ("first", "second")]
    return all(high <= 1.25 * low for low, high in ranges)


# (fixed sentence on the page, what must hold in the executed copy for it to be true)
CLAIMS = [
    ("The two loops train the same network, so E1's runs are what d2l's loop would have printed",
     lambda g, p: _all_true(p["57098764"])),
    ("given our batches and seed, trains the same network;",
     lambda g, p: _all_true(p["57098764"])),
    ("The sweep measures the factor: after training LeNet-BN at the largest rate of the grid",
     lambda g, p: g["ch6_e2_bn_norm_high"] > g["ch6_e2_bn_norm_low"]
     and g["ch6_e2_eff_range"] < float(g["ch6_e2_lr_range"])),
    ("The loss is the same at every scale, the gradient norm times $s$ is the same, and so is the relative step "
     "times $s^2$.",
     lambda g, p: _all_true(p["d4d5db11"])),
    ("So in LeNet-BN the scale of the BN-fed weights acts as a learning rate $\\eta/s^2$ for them.",
     lambda g, p: _all_true(p["d7bad300"]) and g["ch6_e3_gap_comp"] < 0.01 * g["ch6_e3_gap_same"]
     and g["ch6_e3_gap_same"] > 1e-2),
    ("BN makes a network's output independent of the scale of the weights that feed it, not its training",
     lambda g, p: _all_true(p["d4d5db11"]) and _all_true(p["d7bad300"])),
    ("with tiny weights its output hardly depends on the input",
     lambda g, p: g["ch6_e3_spread_small"] < 0.01 * g["ch6_e3_spread_one"]),
    ("chapter 1's signal-propagation picture, measured on this network",
     lambda g, p: g["ch6_e3_sat_large"] > 0.5 and g["ch6_e3_sat_large"] > g["ch6_e3_sat_one"]),
    ("the effective number grows in proportion to the number of examples",
     lambda g, p: _neff_per_example_steady(g)),
    ("So the noise of a convolutional BN statistic is set mainly by the number of examples in the batch, each worth "
     "a few independent values, not by the number of values it averages",
     lambda g, p: _neff_per_example_steady(g)
     and all(g[f"ch6_neff_{k}_per_example"] <= 20 and g[f"ch6_neff_{k}_quarter"] >= 0.5
             for k in ("first", "second"))),
    ("The count of values a BN statistic averages overstates what it is worth",
     lambda g, p: all(g[f"ch6_neff_{k}_per_example"] < g[f"ch6_neff_{k}_positions"] / 4
                      for k in ("first", "second"))),
    ("the curves lie on top of each other",
     lambda g, p: g["ch6_e5_max_diff"] < 1e-2 and _all_true(p["81a89950"])),
]


@pytest.mark.parametrize("sentence,holds", CLAIMS, ids=[c[0][:40] for c in CLAIMS])
def test_fixed_claim_is_backed_by_the_results(executed, sentence, holds):
    text, glued, printed = executed
    assert sentence in text, f"the claim is no longer on the page: {sentence!r} (update CLAIMS)"
    assert holds(glued, printed), f"the results of this execution contradict: {sentence!r}"


def test_checks_printed_by_the_page_hold(executed):
    """Every nbval-checked fact the page prints as a boolean is True in this execution."""
    _, _, printed = executed
    for cell_id in ("4f1d2a90", "57098764", "d4d5db11", "d7bad300", "12320c81", "81a89950", "dd7edd35"):
        assert "False" not in printed[cell_id], f"cell {cell_id} printed False:\n{printed[cell_id]}"


def test_verdicts_agree_with_their_intervals(executed):
    """Every glued comparison (key, key_verdict, key_low, key_high) says what its interval says, and the phrase
    the prose shows starts with that verdict."""
    _, g, _ = executed
    keys = [k[:-len("_verdict")] for k in g if k.endswith("_verdict") and f"{k[:-len('_verdict')]}_low" in g]
    assert len(keys) >= 20, keys
    for key in keys:
        low, high, verdict = g[f"{key}_low"], g[f"{key}_high"], g[f"{key}_verdict"]
        assert low <= high
        expected = "higher" if low > 0 else ("lower" if high < 0 else "indistinguishable")
        assert verdict == expected, key
        if isinstance(g.get(key), str) and "95 % CI" in g[key]:
            assert g[key].startswith(verdict), (key, g[key])


def test_training_outcomes_partition_the_grid(executed):
    _, g, _ = executed
    for key in ("plain", "bn", "relu_plain", "relu_bn"):
        lists = [g[f"ch6_e2_{key}_{tag}"] for tag in ("trains", "fails", "unclear")]
        rates = [r for part in lists if part != "none" for r in part.split(", ")]
        assert len(rates) == len(set(rates)) == 4, (key, lists)
    for key in ("plain", "bn"):
        lists = [g[f"ch6_e3_{key}_{tag}"] for tag in ("trains", "fails", "unclear")]
        scales = [s for part in lists if part != "none" for s in part.split(", ")]
        assert len(scales) == len(set(scales)) == 4, (key, lists)


def test_every_glue_reference_on_the_page_was_glued(executed):
    text, glued, _ = executed
    used = set(re.findall(r"\{glue:(?:text|figure|any)\}`([A-Za-z0-9_.]+)", text))
    used |= set(re.findall(r"```\{glue:figure\} ([A-Za-z0-9_]+)", text))
    assert used - set(glued) == set()


def _calls(tree, names):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in names:
                yield name, node


def test_the_chapter_tunes_on_the_validation_split_only():
    """Tuning never reads the test set: the chapter's sweeps are never pointed at another split (lr_sweep and
    init_sweep evaluate on validation only; e4_sweep is called without a split or with split="val"), and the
    only runs evaluated on the test split are run_seeds calls for settings fixed beforehand."""
    nb = json.loads(chapter_path("06").read_text())
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code"
                     and "setup" not in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))))
    sweeps = list(_calls(tree, SWEEPS))
    assert {name for name, _ in sweeps} == SWEEPS
    for name, call in sweeps:
        for kw in call.keywords:
            if kw.arg == "split":
                assert isinstance(kw.value, ast.Constant) and kw.value.value == "val", (name, ast.unparse(call))
    # the settings chosen on validation come from the sweep's val_acc column
    assert re.search(r"e2\.groupby\(\[\"model\", \"lr\"\]\)\.val_acc\.mean\(\)", code)
    assert "test_acc" not in code.split("chosen = ")[1].split("\n")[0]


def test_e4_convergence_check_counts_every_setting_once(executed):
    """E4's convergence check: every setting is still falling, not measurably falling, or not checked (a single
    epoch), and only the checked ones are counted as not falling."""
    _, g, _ = executed

    def listed(key):  # "<model> at batch <B>, ...": model names may hold commas
        return [] if g[key] == "none" else re.findall(r"(?:^|, )(.+?) at batch (\d+)", g[key])

    still, unchecked = listed("ch6_e4_still"), listed("ch6_e4_unchecked")
    assert not set(still) & set(unchecked)
    assert g["ch6_e4_checked"] == g["ch6_e4_settings"] - len(unchecked)
    assert g["ch6_e4_not_falling"] == g["ch6_e4_checked"] - len(still)
