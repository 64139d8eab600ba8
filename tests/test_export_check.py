"""tools/export_model.py's check compares detections or says it cannot: where the model keeps
none on the sample image at its score threshold, a copy exported at threshold 0 is compared
(said in the output and in export.json) and the file keeps the model's threshold; where the
model detects nothing even then, the export stops without writing anything."""
import json

import pytest
import torch

from resnet_backbone import model_zoo
from test_export import DESIGNS, SMALL, export_model, image_of_size


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("sample") / "sample.png"
    cv2.imwrite(str(path), image_of_size(120, 150).permute(1, 2, 0).byte().numpy())
    return path


def export_args(sample_image, output, *overrides):
    name, design = DESIGNS["C4"]
    return ["--config-file", model_zoo.get_config_file(name), "--output", str(output),
            "--sample-image", str(sample_image), *SMALL, *design, *overrides]


def test_no_detection_at_the_model_s_threshold_checks_a_copy_at_threshold_0(sample_image,
                                                                             tmp_path, capsys):
    # untrained: every class scores about 1/K, none reaches 0.99
    path = export_model.main(export_args(sample_image, tmp_path,
                                         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.99"))
    printed = capsys.readouterr().out
    assert ("keeps no detection on the sample image at its score threshold 0.99: the check "
            "compares a copy exported with the threshold at 0; model.ts keeps 0.99") in printed
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["score_threshold"] == {"model": 0.99, "checked_at": 0.0}
    copy, final = info["checks"][:2], info["checks"][2:]
    assert [c["score_threshold"] for c in info["checks"]] == [0.0, 0.0, 0.99, 0.99]
    assert copy[0]["detections"] > 0
    assert [c["detections"] for c in final] == [0, 0]
    # the file written keeps the model's threshold
    image = export_model.read_sample_image(export_model.load_model_run(
        str(model_zoo.get_config_file(DESIGNS["C4"][0])), [*SMALL, *DESIGNS["C4"][1]]),
        str(sample_image))
    assert len(torch.jit.load(path)(image)[0]) == 0


def test_a_model_detecting_nothing_at_all_is_not_exported(sample_image, tmp_path, capsys):
    (tmp_path / "export.json").write_text("{}")  # an earlier export's record
    with pytest.raises(SystemExit) as stop:
        export_model.main(export_args(sample_image, tmp_path,
                                      "MODEL.RPN.POST_NMS_TOPK_TEST", "0"))  # no proposals
    assert stop.value.code not in (0, None)
    message = str(stop.value.code)
    assert "detects nothing on the 96x120 sample image" in message
    assert "at its score threshold 0.05 nor at 0, so the check would compare nothing" in message
    assert "Nothing was exported, export.json was not written" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_model_with_detections_is_checked_at_its_own_threshold(sample_image, tmp_path,
                                                                  capsys):
    export_model.main(export_args(sample_image, tmp_path))
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["score_threshold"] == {"model": 0.05, "checked_at": 0.05}
    assert len(info["checks"]) == 2 and info["checks"][0]["detections"] > 0
    assert "copy" not in capsys.readouterr().out
