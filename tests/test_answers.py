"""Answers carry the asked fact with a supporting citation: a subset of benchmarks/answers.py,
plus the image-header facts on real pydicom/nibabel files (identifiers never among them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from answers import run  # noqa: E402

from agent.questions import asks_identifier  # noqa: E402
from tools.header_facts import header_facts  # noqa: E402
from tools.images import IDENTIFYING_TAGS, load_image  # noqa: E402


@pytest.mark.parametrize(
    "name", ["RG1_UNCR.dcm", "CT_small.dcm", "MR_small.dcm", "MR2_UNCR.dcm", "US1_UNCR.dcm"]
)
def test_header_facts_match_pydicom_and_hold_no_identifier(name):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    facts = {f.name: f for f in header_facts(load_image(path))}
    assert facts["modality"].value == ds.Modality
    assert all(f.provenance == "image header" for f in facts.values())
    pairs = [("KVP", "kvp"), ("SliceThickness", "slice_thickness")]
    pairs += [("RepetitionTime", "repetition_time"), ("EchoTime", "echo_time")]
    for keyword, fact in pairs:
        if keyword in ds:
            assert facts[fact].value == pytest.approx(float(ds.get(keyword)))
    if "PixelSpacing" in ds and float(ds.PixelSpacing[0]) > 0:  # RG1 stores 0: no fact
        assert facts["pixel_spacing"].value == pytest.approx([float(v) for v in ds.PixelSpacing])
    secrets = [str(ds.get(t)) for t in IDENTIFYING_TAGS if str(ds.get(t, "")).strip()]
    blob = " ".join(f"{f.value} {f.text}" for f in facts.values())
    assert not [s for s in secrets if len(s) >= 4 and s in blob]


def test_nifti_voxel_size_and_slices_match_nibabel():
    import nibabel as nib
    import nibabel.testing

    path = Path(nibabel.testing.data_path) / "anatomical.nii"
    img = nib.load(str(path))
    facts = {f.name: f for f in header_facts(load_image(path))}
    assert facts["voxel_size"].value == pytest.approx([float(z) for z in img.header.get_zooms()])
    assert facts["slices"].value == img.shape[2]


def test_identifier_questions_are_recognised_and_image_questions_are_not():
    assert asks_identifier("What is the patient's name?")
    assert asks_identifier("What is the date of birth?")
    assert not asks_identifier("What is the in-plane pixel spacing of this MR image?")
    assert not asks_identifier("Describe this image.")


@pytest.mark.slow
def test_answer_benchmark_subset_in_rules_mode():
    ids = {
        "kvp-cr", "tr-mr2", "ps-mr2", "vox-nii", "mpp-cell", "mod-us", "id-name-ct",
        "id-dob-mr2", "lit-tcp", "lit-heme", "dens-ihc", "area-cell-disagree",
    }  # fmt: skip
    report = run(
        "rules",
        routing="keyword",
        only={"acquisition", "geometry", "modality", "identifier", "literature", "pixel size"},
        ids=ids,
        progress=False,
    )
    failed = [(c["id"], c["why"], c["answer"]) for c in report["cases"] if not c["passed"]]
    assert report["total"] == len(ids)
    assert not failed


def test_pixel_size_from_the_question_converts_and_carries_over_to_follow_ups(tmp_path):
    from agent_fixtures import agent_settings, write_sample_images

    from agent.assistant import Assistant
    from tools.measure import measure

    ihc = write_sample_images(tmp_path / "img")["ihc"]
    settings = agent_settings(tmp_path, vision_model=tmp_path / "no-model", similar_k=0)
    reference = measure(load_image(ihc), pixel_size_um=0.5).summary
    with Assistant(settings) as assistant:
        first = assistant.ask("Nuclear density per mm2? The pixel size is 0.5 um.", [ihc])
        follow = assistant.ask("What is the mean nuclear area?", thread_id=first.thread_id)
    assert f"{reference['nuclei_per_mm2_tissue']:.0f}" in first.text
    assert "0.5 um stated in the question" in first.text
    assert f"{reference['nuclear_area']['mean']:.3g} µm²" in follow.text
    assert "stated earlier in this thread" in follow.text
