"""Sphinx glue for the lessons: a "next lesson" link at the end of every lesson page, and the
``lesson-map`` directive (a table of lessons and the papers they follow) for the introduction.

Lessons are the documents ``lessons/NN_*`` (notebooks), ordered by their number, so a new lesson
appears in the map and in the chain of next-links without editing anything here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

LESSON_DOC = re.compile(r"^lessons/\d\d_[^/]+$")
# A paper in a lesson's opening cell is a link whose text is in italics: [*Title*](url).
PAPER_LINK = re.compile(r"\[\*([^\]]+?)\*\]\((https?://[^)\s]+)\)")
AFTER_LAST_LESSON = "results"  # where the last lesson's "next" link points


def lesson_docs(env) -> list[str]:
    return sorted(d for d in env.found_docs if LESSON_DOC.match(d))


def lesson_intro(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """Title (the first ``# `` heading) and papers ``[(title, url)]`` of the notebook's first markdown cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
    title = next((line[2:].strip() for line in source.splitlines() if line.startswith("# ")), path.stem)
    papers = [(" ".join(t.split()), url) for t, url in PAPER_LINK.findall(source)]
    return title, papers


def _doc_link(target: str, text: str) -> addnodes.pending_xref:
    ref = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/" + target, refexplicit=True,
                                refwarn=True)
    ref += nodes.inline(text, text)
    return ref


def add_next_link(app: Sphinx, doctree: nodes.document) -> None:
    """Append "Next lesson: <title>" (or, on the last lesson, a link to the results) to a lesson page."""
    env = app.env
    docs = lesson_docs(env)
    if env.docname not in docs:
        return
    i = docs.index(env.docname)
    para = nodes.paragraph(classes=["minidet-next-lesson"])
    if i + 1 < len(docs):
        title, _ = lesson_intro(Path(env.doc2path(docs[i + 1])))
        para += nodes.strong("Next lesson: ", "Next lesson: ")
        para += _doc_link(docs[i + 1], title)
        env.note_dependency(env.doc2path(docs[i + 1]))
    else:
        para += nodes.strong("This was the last lesson. ", "This was the last lesson. ")
        para += nodes.Text("Next: ")
        para += _doc_link(AFTER_LAST_LESSON, "the measured results")
    section = next(iter(doctree.findall(nodes.section)), doctree)
    section += nodes.transition()
    section += para


def _table(header: list[str], rows: list[list[list[nodes.Node]]], widths: list[int]) -> nodes.table:
    """A docutils table (the directive may sit in Markdown or reST, so it builds nodes, not markup)."""
    tgroup = nodes.tgroup(cols=len(header))
    tgroup += [nodes.colspec(colwidth=w) for w in widths]
    thead, tbody = nodes.thead(), nodes.tbody()
    thead += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in header])
    for cells in rows:
        tbody += nodes.row("", *[nodes.entry("", nodes.paragraph("", "", *cell)) for cell in cells])
    tgroup += [thead, tbody]
    return nodes.table("", tgroup, classes=["minidet-lesson-map"])


class LessonMap(SphinxDirective):
    """A table: lesson (linked), what it covers, the papers it follows (from its opening cell)."""

    def run(self) -> list[nodes.Node]:
        rows = []
        for doc in lesson_docs(self.env):
            path = Path(self.env.doc2path(doc))
            self.env.note_dependency(str(path))
            title, papers = lesson_intro(path)
            number, _, topic = title.partition("—")
            paper_nodes: list[nodes.Node] = []
            for k, (text, url) in enumerate(papers):
                paper_nodes += [nodes.Text("; ")] * (k > 0) + [nodes.reference(text, text, refuri=url)]
            rows.append([[_doc_link(doc, number.strip() or doc)], [nodes.Text(topic.strip() or title)],
                         paper_nodes or [nodes.Text("background (no single paper)")]])
        return [_table(["lesson", "what you learn", "papers"], rows, [12, 48, 40])]


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", add_next_link)
    app.add_directive("lesson-map", LessonMap)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
