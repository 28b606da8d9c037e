"""The look of fcnkit's self-contained HTML pages: one style sheet and one escape.

Shared by the run report (:mod:`fcnkit.web.report`) and the reproductions summary
(:mod:`fcnkit.reproduce.summary`), so both pages read alike.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["PAGE_STYLE", "escape"]

#: The pages' CSS (inlined into each page, which then opens offline).
PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{padding:.6rem 1.2rem;background:#24324a;color:#eef1f6}
header h1{margin:.2rem 0;font-size:1.4rem} header p{margin:.2rem 0;font-size:.9rem}
main{padding:1rem;display:grid;gap:1rem}
section{background:#fff;border:1px solid #d5d9e1;border-radius:6px;padding:.6rem .9rem;
overflow:auto} h2{font-size:1.1rem;margin:.2rem 0 .6rem}
table{border-collapse:collapse;font-size:.85rem} th,td{border-bottom:1px solid #e1e4ea;
padding:.2rem .5rem;text-align:right} th:first-child,td:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .chart{margin:0}
.chart .grid{stroke:#e3e6ec} .chart .tick{font-size:10px;fill:#555}
.chart .title{font-size:12px;font-weight:600} .chart .point{cursor:pointer}
.chart .point:hover{r:5}
#tooltip{position:fixed;pointer-events:none;background:#24324a;color:#fff;padding:.2rem .45rem;
border-radius:4px;font-size:.8rem;display:none;z-index:9}
.legend span{display:inline-block;margin-right:1rem} .swatch{display:inline-block;width:.8rem;
height:.8rem;margin-right:.3rem;vertical-align:middle}
.gallery figure{display:inline-block;margin:0 1rem 1rem 0;vertical-align:top}
.gallery img{image-rendering:pixelated;width:160px;border:1px solid #ccd;margin-right:2px}
.gallery figcaption{font-size:.8rem;color:#444}
pre{font-size:.8rem;background:#f3f4f7;padding:.5rem;overflow:auto}
.confusion td{text-align:center;min-width:2.2rem} .note{color:#7a4b00;font-size:.85rem}
"""


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML (``&``, ``<``, ``>`` and quotes escaped)."""
    return html.escape(str(value))
