"""Chapter 6 says nothing its own runs contradict.

Every outcome in chapter 6's prose is either a glued value chosen by the code from the runs of that execution,
or a fixed sentence that holds only if certain results came out a certain way. This test reads the glued values
of an executed copy of the chapter (the committed notebook, whose outputs are those of its last, full-mode
execution; or, with ``NORMBOOK_CLAIMS_EXECUTED=<notebook>``, another executed copy: ``make claims-fast``, part of
``make test``, passes the FAST book build's, ``_build/fast/_build/jupyter_execute/chapters/06_*.ipynb`` with the glued values
in the ``.glue.json`` beside it; it must have run the chapter's current code) and checks, claim by claim, that each fixed sentence is still on the page and
that the results backing it hold. A new fixed outcome sentence belongs in CLAIMS below.
"""
import json
import os
import re
from pathlib import Path

import pytest

from _notebook import chapter_path


def _glued(nb: dict) -> dict:
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                data = out.get("data", {})
                text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
                values[meta["name"]] = text if isinstance(text, str) else "".join(text or [])
    return values


def _value(text: str):
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.fixture(scope="module")
def executed():
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
    text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb["cells"] if c["cell_type"] == "markdown")
    return text, {k: _value(v) for k, v in _glued(nb).items()}


# (fixed sentence on the page, what must hold in the glued results for it to be true)
CLAIMS = [
    ("BN addresses both:",
     lambda g: g["ch6_e2_verdict"].startswith("In this sweep BN widens")),
    ("so the sigmoid sees inputs of unit scale whatever $s$ is",
     lambda g: g["ch6_e3_trained_bn"] >= g["ch6_e3_trained_plain"]),
    ("The BN column's cause is in the values-per-statistic column",
     lambda g: g["ch6_e4_small_verdict"] != "does not exceed GN's"),
    ("The cause is the lag of the running averages (chapter 4).",
     lambda g: g["ch6_pop_verdict"] == "higher"),
    ("which recomputing the statistics for the current weights addresses",
     lambda g: g["ch6_pop_verdict"] == "higher"),
    ("Normalized pre-activations make the signal independent of the weights' scale.",
     lambda g: g["ch6_sum_e2"].startswith("BN widened") or g["ch6_sum_e3"].startswith("BN widened")),
    ("train to the same loss curve up to float32 rounding",
     lambda g: g["ch6_e5_max_diff"] < 1e-2),
]


@pytest.mark.parametrize("sentence,holds", CLAIMS, ids=[c[0][:40] for c in CLAIMS])
def test_fixed_claim_is_backed_by_the_results(executed, sentence, holds):
    text, glued = executed
    assert sentence in text, f"the claim is no longer on the page: {sentence!r} (update CLAIMS)"
    assert holds(glued), f"the results of this execution contradict: {sentence!r}"


def test_verdicts_agree_with_their_numbers(executed):
    _, g = executed
    # E4: the verdict at batch 2 is the one its numbers give
    d, sd = g["ch6_e4_d2"], g["ch6_e4_sd2"]
    expected = ("exceeds GN's by more than three standard deviations of the difference" if d > 3 * sd else
                "exceeds GN's, but by less than three standard deviations of the difference" if d > 0 else
                "does not exceed GN's")
    assert g["ch6_e4_small_verdict"] == expected
    assert ("exceeded" in g["ch6_sum_e4"]) == (d > 0)
    # the throughput verdict matches the ratio
    assert (g["ch6_speed_verdict"] == "at least as fast as") == (g["ch6_speed_ratio"] >= 1)
    # the controlled comparison: each verdict is the one its difference and standard deviation give
    for key in ("own", "shared"):
        d, sd = g[f"ch6_ctrl_{key}_dacc"], g[f"ch6_ctrl_{key}_sdacc"]
        expected = "indistinguishable" if abs(d) <= 2 * sd else ("higher than" if d > 0 else "lower than")
        assert g[f"ch6_ctrl_{key}_acc"].startswith(expected)
    # the sweep's budget note says whether the plain network trained at some rate
    assert g["ch6_e2_budget_note"].startswith("The budget is chosen") == \
        (not g["ch6_e2_plain_phrase"].startswith("at none"))
    # E1: "higher"/"lower" matches the sign of the gap between the means
    gap = g["ch6_e1_bn_test_acc_mean"] - g["ch6_e1_plain_test_acc_mean"]
    assert g["ch6_e1_verdict"] == ("higher" if gap > 0 else "lower")


def test_every_glue_reference_on_the_page_was_glued(executed):
    text, glued = executed
    used = set(re.findall(r"\{glue:(?:text|figure|any)\}`([A-Za-z0-9_]+)", text))
    used |= set(re.findall(r"```\{glue:figure\} ([A-Za-z0-9_]+)", text))
    assert used - set(glued) == set()
