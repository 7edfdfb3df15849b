"""Scripted runs: the agent over a folder of images, written as Markdown, HTML and JSON.

For each image: the image, the vision model's description (or why it is unavailable), the
measurements with their overlay, similar cases, literature, the answers to the questions with
their citations, and the time each tool took. One thread per image, so the questions after
the first reuse its results. An image that cannot be read is listed and the run goes on.

One module per job: ``inputs`` (the questions file, the image list), ``run`` (asking the
agent, ``build_report``), ``collect`` (the thread's tool results and figures into an
``ImageReport``), ``render`` (the ``litevlm.render.Page`` that both report.md and report.html
come from), ``schema`` (the report's types, what report.json holds).

Questions file (YAML)::

    default:                 # asked about every image, after "Describe this image."
      - How many cells are there, and how large are they?
    images:                  # extra questions for one image (file name)
      ihc_colon.png:
        - What is known about FHL2 immunohistochemistry in the colon?
"""

from agent.report.inputs import collect_images, load_questions
from agent.report.render import to_page, write_html, write_json, write_markdown
from agent.report.run import DESCRIBE, THUMB_PX, build_report
from agent.report.schema import QA, BadImage, ImageReport, Report

__all__ = [
    "DESCRIBE",
    "QA",
    "THUMB_PX",
    "BadImage",
    "ImageReport",
    "Report",
    "build_report",
    "collect_images",
    "load_questions",
    "to_page",
    "write_html",
    "write_json",
    "write_markdown",
]
