"""Identifiers never leave in any spelling: queries, answers, reports, logs, DICOM metadata.

The property-based tests generate identities (names with diacritics, IDs, birth dates) and the
spellings people and file systems use, and check that none reaches a recorded outbound request
(literature served by the local recording server), an answer, a report or a log line.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from literature_fixtures import serve_fixtures
from privacy_fixtures import (
    Identity,
    context,
    identities,
    leaks,
    long_identities,
    spellings,
    write_dicom,
)

from tools.privacy import display_name, fold, redact

# No "explain" phase: on a failure it reruns thousands of cases for minutes.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)
IDS = {"PatientName": "Zyxwvut^Qqqq", "PatientID": "PIDqqq777", "PatientBirthDate": "19610203"}


@pytest.mark.parametrize(
    "spelled",
    [
        "Zyxwvut_Qqqq", "ZyxwvutQqqq", "Zyxwvut-Qqqq", "qqqq.zyxwvut", "ZYXWVUT QQQQ",
        "Qqqq Zyxwvut", "zyxwvut, qqqq", "Zyxwvut^Qqqq", "zyxwvutqqqq", "Qqqq's",
        "PIDqqq777", "pidqqq777", "PIDqqq777_scan", "scan-PIDqqq777.dcm", "PID-qqq-777",
        "03021961", "19610203", "2/3/61", "3/2/61", "02/03/1961", "1961-02-03", "3.2.1961",
        "3 Feb 1961", "3 FEB 61", "February 3rd, 1961", "3rd of February 1961", "Feb. 3, 1961",
        "1961 Feb 3", "030261",
    ],
)  # fmt: skip
def test_every_spelling_of_the_issue_is_removed(spelled):
    clean, n = redact(f"liver lesions in {spelled} scan", IDS)
    assert n >= 1 and clean.startswith("liver lesions in") and clean.endswith("scan"), clean
    assert not leaks(clean, _issue_identity(), spelled)


def test_the_leak_check_reads_an_id_as_a_code():
    # names fold "ae" to "a" (Maeller = Mäller); an ID must not: "AE000" is not "a 0.000"
    import datetime as dt

    who = Identity("Bbbb", "Bbb", "AE000", dt.date(2000, 1, 1))
    assert not leaks('"route": 0.0, "a": 0.000123', who)
    assert leaks("scan AE-000.dcm", who) == leaks("scanae000", who) == ["AE000"]


def _issue_identity() -> Identity:
    import datetime as dt

    return Identity("Zyxwvut", "Qqqq", "PIDqqq777", dt.date(1961, 2, 3))


@pytest.mark.parametrize(
    "spelled",
    ["Müller", "Muller", "Mueller", "MÜLLER", "MUELLER", "mueller-juergen", "JuergenMüller"],
)
def test_diacritics_are_folded(spelled):
    ids = {"PatientName": "Müller^Jürgen"}
    assert redact(f"{spelled} scan", ids) == ("scan", 1)
    assert redact("Strauss and Strauß", {"PatientName": "Strauß^Anna"}) == ("and", 2)


def test_ordinary_words_survive():
    ids = {"PatientName": "Li^Al^Ann", "PatientID": "12", "StudyID": "3"}
    text = "lipid alpha Annals: 12 nuclei, 3 lesions in the liver (Al-Li alloy is not a name)"
    clean, n = redact(text, ids)
    assert clean.startswith("lipid alpha Annals: 12 nuclei, 3 lesions in the liver")
    assert " Al" not in clean and "Li " not in clean and n == 1
    # Name parts of 3-5 letters go at word boundaries only; 6+ letters also inside tokens.
    ids = {"PatientName": "Rose^Ann", "PatientID": "AB1234"}
    assert redact("rosette Anniversary RoseScan roseann xAB1234y", ids) == (
        "rosette Anniversary Scan x y",
        3,
    )
    assert redact("van der Berg and Bergen", {"PatientName": "van der Berg^Anna"}) == (
        "and Bergen",
        1,
    )


def test_file_names_keep_their_suffix():
    assert display_name("Zyxwvut_Qqqq scan.dcm", IDS) == "scan.dcm"
    assert display_name("PIDqqq777.nii.gz", IDS) == "image.nii.gz"
    assert display_name("ct.dcm", IDS) == "ct.dcm"
    assert display_name("3.2.1961 ct.dcm", IDS) == "ct.dcm"
    assert display_name("Zyxwvut.Qqqq", IDS) == "image"


@settings(max_examples=300, deadline=None, phases=PHASES)
@given(who=identities, data=st.data())
def test_generated_spellings_never_survive_redaction(who: Identity, data):
    spelled = data.draw(spellings(who), label="spelling")
    text = f"What is known about liver lesions in {spelled} (scan of {spelled})?"
    clean, n = redact(text, who.identifiers)
    assert n >= 1, (text, clean)
    assert not leaks(clean, who, spelled), (text, clean)
    assert "liver lesions" in clean


# -- DICOM metadata, the CLI and the log ---------------------------------------------------


def test_dicom_free_text_is_cleaned_and_comments_removed(tmp_path):
    from tools.images import load_image

    path = write_dicom(tmp_path / "ct.dcm")
    meta = load_image(path).metadata
    assert meta["study_description"] == "CT abdomen"
    assert meta["series_description"] == "axial"
    dumped = json.dumps(meta).lower()
    assert "zyxwvut" not in dumped and "qqqq" not in dumped and "image_comments" not in dumped


def test_inspect_shows_no_identifier(tmp_path):
    from typer.testing import CliRunner

    from litevlm.cli import app

    path = write_dicom(tmp_path / "Zyxwvut_Qqqq scan.dcm")
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "study_description: CT abdomen" in result.output or "CT abdomen" in result.output
    body = result.output.replace(str(path), "")  # the path the user typed is theirs
    assert "zyxwvut" not in body.lower() and "pidqqq777" not in body.lower()


def test_log_lines_are_cleaned_after_an_image_is_loaded(tmp_path, caplog):
    from tools.images import load_image

    load_image(write_dicom(tmp_path / "ct.dcm"))
    log = logging.getLogger("litevlm.test")
    with caplog.at_level(logging.INFO):
        log.info("answering %r", "lesions in ZyxwvutQqqq born 3 Feb 1961")
        try:
            raise ValueError("cannot read /data/Zyxwvut_Qqqq/PIDqqq777_scan.dcm")
        except ValueError:
            log.exception("upload failed")
    text = caplog.text
    assert "answering 'lesions in born" in text and "upload failed" in text
    assert "zyxwvut" not in text.lower() and "pidqqq777" not in text.lower()


# -- end to end: requests, answers, reports and logs ---------------------------------------


@pytest.fixture(scope="module")
def lit():
    with serve_fixtures() as server:
        yield server


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, lit):
    from agent_fixtures import agent_settings

    from agent.assistant import Assistant

    root = tmp_path_factory.mktemp("privacy_e2e")
    # No vision model: its failure is one cached line, so each case takes a fraction of a
    # second; what is checked is the text around it (question, names, measurement, papers).
    cfg = agent_settings(
        root,
        vision_model=root / "no-vision-model",
        literature=lit.config(sources=["pubmed", "arxiv", "wikipedia", "web"], cache=False),
        similar_k=0,
    )
    with Assistant(cfg) as assistant:
        yield root, assistant


def _sent(server, since: int) -> str:
    return " ".join(
        r.path + json.dumps(r.params) + r.body.decode("utf-8", "replace")
        for r in server.requests[since:]
    )


@settings(
    max_examples=15,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(who=long_identities, data=st.data())
def test_no_spelling_reaches_a_request_an_answer_a_report_or_a_log(
    who: Identity, data, e2e, lit, caplog
):
    from agent.report import build_report

    root, assistant = e2e
    in_question = data.draw(spellings(who), label="question spelling")
    in_name = data.draw(spellings(who), label="file-name spelling")
    case = root / fold(who.patient_id)
    path = write_dicom(
        case / f"{in_name.replace('/', '-')} ct.dcm",
        name=who.pn,
        patient_id=who.patient_id,
        birth_date=who.da,
    )
    question = f"What is known about liver lesions in {in_question} ({in_name})?"
    before = len(lit.requests)
    with caplog.at_level(logging.DEBUG):
        answer = assistant.ask(question, [path])
        (case / "q.yaml").write_text(json.dumps({"default": [question]}), encoding="utf-8")
        report = build_report(
            [path],
            case / "report",
            assistant.settings,
            questions=case / "q.yaml",
            assistant=assistant,
            progress=False,
        )
    sent = _sent(lit, before)
    assert len(lit.requests) > before  # the question did go out, cleaned
    outputs = {
        "requests": sent,
        "answer": answer.model_dump_json(),
        "report.json": (case / "report" / "report.json").read_text("utf-8"),
        "report.md": (case / "report" / "report.md").read_text("utf-8"),
        "report.html": (case / "report" / "report.html").read_text("utf-8"),
        "figures": " ".join(p.name for p in (case / "report" / "figures").iterdir()),
        "log": caplog.text,
    }
    assert report.images and not report.bad
    for where, text in outputs.items():
        for spelled in (in_question, in_name):
            found = leaks(text, who, spelled)
            assert not found, (where, spelled, found, [context(text, f) for f in found])
    caplog.clear()


def test_ask_image_without_a_question_describes_it_and_sends_nothing(tmp_path, e2e, lit):
    from typer.testing import CliRunner

    from litevlm.cli import app

    _, assistant = e2e
    cfg = assistant.settings
    path = write_dicom(tmp_path / "Zyxwvut_Qqqq scan.dcm")
    env = {
        "LITEVLM_DATA_DIR": str(cfg.data_dir),
        "LITEVLM_AGENT__CHECKPOINTER": str(tmp_path / "t.sqlite"),
        "LITEVLM_VISION__MODEL": cfg.vision.model,
        "LITEVLM_VISION__LOCAL_FILES_ONLY": "true",
        "LITEVLM_AGENT__SIMILAR_K": "0",
        "LITEVLM_LITERATURE__PUBMED_BASE_URL": cfg.literature.pubmed_base_url,
        "LITEVLM_LITERATURE__ARXIV_BASE_URL": cfg.literature.arxiv_base_url,
        "LITEVLM_LITERATURE__WIKIPEDIA_BASE_URL": cfg.literature.wikipedia_base_url,
    }
    before = len(lit.requests)
    result = CliRunner().invoke(app, ["ask", str(path), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert len(lit.requests) == before  # a path is never a query
    answer = json.loads(result.stdout)  # stderr has the text model's loading bar
    assert "(measurement)" in json.dumps(answer) or answer["sources"]
    assert "zyxwvut" not in result.output.lower() and "qqqq" not in result.output.lower()


def test_a_follow_up_without_the_image_is_cleaned_of_the_threads_identifiers(tmp_path, e2e, lit):
    _, assistant = e2e
    path = write_dicom(tmp_path / "ct.dcm")
    first = assistant.ask("Describe this image.", [path])
    before = len(lit.requests)
    answer = assistant.ask(
        # a topic no earlier test of the module asked about: the literature cache must not answer
        "What is known about hepatic cysts in ZYXWVUT-QQQQ (pid qqq 777, born 3rd Feb 61)?",
        thread_id=first.thread_id,
    )
    sent = _sent(lit, before)
    assert len(lit.requests) > before and "hepatic" in sent
    for text in (sent, answer.model_dump_json()):
        assert not leaks(text, _issue_identity(), "ZYXWVUT-QQQQ"), text
        assert "777" not in text.replace(first.thread_id, "") and "Feb" not in text


def test_a_chat_model_is_never_sent_the_identifiers_a_tool_output_carries(tmp_path, monkeypatch):
    """A VLM can read a name burned into the pixels; the chat model (maybe remote) must not
    receive it, in the routing call or in the synthesis call's sources."""
    from agent_fixtures import agent_settings, scripted, tool_call
    from langchain_core.messages import AIMessage

    from agent.assistant import Assistant
    from agent.tools.toolbox import Toolbox
    from litevlm.types import VisionResult

    def reads_the_label(self, images, question, **kw):
        text = "A chest radiograph labelled ZYXWVUT, QQQQ PIDqqq777 DOB 03/02/1961."
        return [VisionResult(text=text, model_id="reader", prompt="caption en") for _ in images]

    monkeypatch.setattr(Toolbox, "vision_batch", reads_the_label)
    monkeypatch.setattr(Toolbox, "vision_backend", lambda self, *a, **k: None)
    path = write_dicom(tmp_path / "ct.dcm")
    model = scripted(
        AIMessage("", tool_calls=[tool_call("vision", image="ct.dcm")]),
        "The image is a chest radiograph [1].",
    )
    cfg = agent_settings(tmp_path, vision_model=tmp_path / "reader", similar_k=0)
    with Assistant(cfg, chat_model=model) as assistant:
        answer = assistant.ask("Describe this image.", [path])
    sent = " ".join(str(m.content) for prompt in model.prompts for m in prompt)
    assert len(model.prompts) == 2 and "chest radiograph" in sent, sent
    for text in (sent, answer.model_dump_json()):
        assert not leaks(text, _issue_identity(), "ZYXWVUT, QQQQ"), text
        assert not leaks(text, _issue_identity(), "03/02/1961"), text
    assert "777" not in sent and "1961" not in sent, sent  # (the answer's timings hold digits)
