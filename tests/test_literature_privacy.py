"""PHI redaction: DICOM header identifiers never reach a service, a cache or a log."""

from __future__ import annotations

import logging

import pytest
from literature_fixtures import serve_fixtures

from tools.literature import search_literature
from tools.privacy import redact

IDS = {
    "PatientName": "Doe^John^Michael",
    "PatientID": "MRN-004217",
    "PatientBirthDate": "19700131",
    "AccessionNumber": "ACC99812",
    "OtherPatientIDs": "['OLD-77', 'Z991']",
    "InstitutionName": "St Mary Hospital",
}


@pytest.mark.parametrize(
    "text",
    [
        "nodule in Doe^John^Michael",
        "nodule in DOE^JOHN",
        "nodule in John Doe",
        "nodule in john michael doe",
        "nodule in Doe, John",
        "nodule in doe john",
    ],
)
def test_person_name_forms(text):
    clean, n = redact(text, IDS)
    assert clean == "nodule in" and n >= 1
    assert "doe" not in clean.lower() and "john" not in clean.lower()


@pytest.mark.parametrize(
    "date",
    [
        "19700131", "1970-01-31", "1970/01/31", "31/01/1970", "01/31/1970", "1/31/1970",
        "31.01.1970", "31-1-1970", "31 Jan 1970", "31 January 1970", "January 31, 1970",
        "jan. 31 1970", "31st of January 1970",
    ],
)  # fmt: skip
def test_birth_date_formats(date):
    assert redact(f"born {date} with glioma", IDS) == ("born with glioma", 1)


def test_ids_accession_and_multivalues_case_insensitive():
    text = "mrn-004217 acc99812 old-77 z991 at ST MARY HOSPITAL: glioma"
    assert redact(text, IDS) == ("at: glioma", 5)


def test_whole_words_only_and_counts():
    ids = {"PatientName": "Li^Al", "PatientID": "12"}
    # "Al Li" is one mention; a 2-digit ID identifies nobody and "12" may be a count
    assert redact("lipid alpha 123 al li 12", ids) == ("lipid alpha 123 12", 1)
    assert redact("li lipid al", ids) == ("lipid", 2)
    assert redact("", ids) == ("", 0)
    assert redact("nothing here", {}) == ("nothing here", 0)
    assert redact("a", {"PatientID": "a"}) == ("a", 0)  # one-letter values are not removed


def test_search_never_sends_identifiers(caplog, tmp_path):
    query = "John Doe MRN-004217 born 31/01/1970 acc99812 glioblastoma MRI"
    with serve_fixtures() as server, caplog.at_level(logging.DEBUG):
        result = search_literature(
            query,
            settings=server.config(),
            identifiers=IDS,
            cache_dir=tmp_path,
        )
        sent = b"".join(
            (r.path + repr(r.query) + repr(r.headers)).encode() + r.body for r in server.requests
        ).lower()
    assert result.redacted == 4
    assert result.query == "born glioblastoma MRI"
    assert len(server.requests) == 5  # every provider asked, all of them with the clean query
    for term in ("john", "doe", "004217", "1970", "acc99812"):
        assert term.encode() not in sent
        assert term not in caplog.text.lower()
        assert term.encode() not in (tmp_path / "literature.sqlite").read_bytes().lower()
    assert "redacted 4 identifier term(s)" in caplog.text


def test_query_of_identifiers_only_sends_nothing():
    with serve_fixtures() as server:
        result = search_literature(
            "Doe^John 19700131", settings=server.config(), identifiers=IDS, use_cache=False
        )
        assert server.requests == []
    assert result.sources == [] and result.redacted == 2
    assert set(result.unavailable.values()) == {
        "source unavailable: the query is empty after redaction"
    }
