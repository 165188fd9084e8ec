"""tools/make_pdf.py's reading of a printed pass: how much of each page is left blank, on the pages asked for."""
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_pdf  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")


def _page(ink_to: float) -> Image.Image:
    """An A4-shaped page with ink from the top of the text area down to ``ink_to`` of the page height."""
    w, h = 210 * 4, 297 * 4
    page = Image.new("L", (w, h), 255)
    top = int(h * make_pdf.MARGIN_MM[0] / make_pdf.PAGE_MM[1])
    if ink_to > 0:
        ImageDraw.Draw(page).rectangle([w // 4, top, w // 2, int(h * ink_to)], fill=0)
    return page


def test_page_fill_measures_only_the_pages_asked_for(tmp_path):
    pdf = tmp_path / "pass.pdf"
    pages = [_page(0.9), _page(0.5), _page(0.0), _page(0.5), _page(0.9)]
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=96)
    fill = make_pdf.page_fill(pdf, [2, 3, 5])
    assert sorted(fill) == [2, 3, 5]
    body_top = make_pdf.MARGIN_MM[0] / make_pdf.PAGE_MM[1]
    body_bottom = 1 - make_pdf.MARGIN_MM[2] / make_pdf.PAGE_MM[1]
    half = (body_bottom - 0.5) / (body_bottom - body_top)        # the share of the text area under the ink
    assert fill[2] == pytest.approx(half, abs=0.03)
    assert fill[3] == 1.0                                        # an empty page
    assert fill[5] < 0.05                                        # ink below the text area's end
    assert make_pdf.page_fill(pdf, []) == {}
