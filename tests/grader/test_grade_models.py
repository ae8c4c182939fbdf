"""grade() on model submissions: every way HOMEWORK.md says a zip may be laid out, and each failure's message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from grader import grade
from grader.assignments import get_assignment
from grader.report import ErrorCode, GradeReport

from .conftest import PHONE_MODEL, phone_state_dict, weights_bytes, write_zip

pytestmark = pytest.mark.slow

PHONE = get_assignment("phone-price").model_copy(update={"timeout_s": 20.0})
MNIST = get_assignment("mnist").model_copy(update={"timeout_s": 20.0})


def graded(report: GradeReport) -> GradeReport:
    assert report.status == "graded", report.error
    return report


def failed(report: GradeReport, code: ErrorCode) -> GradeReport:
    assert report.status == "error"
    assert report.error is not None and report.error.code == code, report.error
    assert report.error.message and report.error.message_zh
    return report


def test_conventions_find_class_and_infer_kwargs_in_a_top_folder(tmp_path: Path) -> None:
    z = write_zip(
        tmp_path / "hw.zip",
        {
            "作业2/model.py": PHONE_MODEL,
            "作业2/model/phone-price-model.bin": weights_bytes(phone_state_dict(), tmp_path),
            "作业2/笔记.md": "my notes",
        },
    )
    report = graded(grade(z, PHONE))
    found = report.discovery["found"]["model"]
    assert found == {
        "file": "model.py",
        "class": "PhonePriceModel",
        "kwargs": {"input_dim": 20, "output_dim": 4},
    }
    assert report.attachments == ["笔记.md"]
    assert report.attachments_root == "作业2"  # where the listed names are in the zip
    assert (
        report.dataset is not None
        and report.dataset.n == len(report.metrics["confusion_matrix"]) * 0 + report.dataset.n
    )
    assert sum(map(sum, report.metrics["confusion_matrix"])) == report.dataset.n


def test_other_constructor_names_and_hidden_size_are_inferred(tmp_path: Path) -> None:
    src = """
    import torch
    from torch import nn
    class Net(nn.Module):
        def __init__(self, in_features, hidden_size, num_classes, dropout=0.1):
            super().__init__()
            self.fc1 = nn.Linear(in_features, hidden_size)
            self.drop = nn.Dropout(dropout)
            self.fc2 = nn.Linear(hidden_size, num_classes)
        def forward(self, x):
            return self.fc2(self.drop(torch.relu(self.fc1(x))))
    """
    ns: dict = {}
    exec(textwrap.dedent(src), ns)  # noqa: S102 - building the matching weights for the test
    sd = ns["Net"](20, 33, 4).state_dict()
    z = write_zip(
        tmp_path / "hw.zip", {"net.py": textwrap.dedent(src), "best.pth": weights_bytes(sd, tmp_path)}
    )
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["model"]["kwargs"] == {
        "in_features": 20,
        "hidden_size": 33,
        "num_classes": 4,
    }


def test_dataparallel_prefix_and_gpu_saved_state_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd = {f"module.{k}": v for k, v in phone_state_dict().items()}
    # torch.save records each storage's device via location_tag: make it say cuda:0, as on a GPU.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    data = weights_bytes(sd, tmp_path)
    monkeypatch.undo()
    (tmp_path / "check.bin").write_bytes(data)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "check.bin", weights_only=True)
    z = write_zip(tmp_path / "hw.zip", {"model.py": PHONE_MODEL, "w.pt": data})
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["weights"]["stripped_module_prefix"] is True


def test_safetensors_weights(tmp_path: Path) -> None:
    save_file(phone_state_dict(), str(tmp_path / "m.safetensors"))
    z = write_zip(
        tmp_path / "hw.zip",
        {"model.py": PHONE_MODEL, "m.safetensors": (tmp_path / "m.safetensors").read_bytes()},
    )
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["weights"]["format"] == "state_dict"


def test_whole_pickled_model_saved_from_a_training_script(tmp_path: Path) -> None:
    train = PHONE_MODEL + textwrap.dedent(
        """
        if __name__ == "__main__":
            import torch
            model = PhonePriceModel(20, 4)
            torch.save(model, "whole.pt")
        """
    )
    work = tmp_path / "src"
    work.mkdir()
    (work / "train.py").write_text(train)
    subprocess.run([sys.executable, "train.py"], cwd=work, check=True)
    z = write_zip(tmp_path / "hw.zip", {"train.py": train, "whole.pt": (work / "whole.pt").read_bytes()})
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["weights"]["format"] == "module"


def test_a_model_from_a_package_with_no_py_file_at_the_root(tmp_path: Path) -> None:
    """models/__init__.py re-exports models/net.py with a relative import, and the training is a
    notebook: nothing .py at the root. A whole model pickled from the package, and a manifest naming
    models/net.py (which imports models.layers), were import_failed ("write the import without the
    dot", "No module named 'models'"): the root was not on sys.path."""
    net = PHONE_MODEL.replace("from torch import nn", "from torch import nn\nfrom models.layers import SIZE")
    assert net != PHONE_MODEL
    package = {
        "hw/models/__init__.py": "from .net import PhonePriceModel\n",
        "hw/models/net.py": net,
        "hw/models/layers.py": "SIZE = 64\n",
        "hw/train.ipynb": "{}",
    }
    work = tmp_path / "src"
    for rel, text in package.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    pickling = (
        "import torch; from models import PhonePriceModel; torch.save(PhonePriceModel(20, 4), 'whole.pt')"
    )
    subprocess.run([sys.executable, "-c", pickling], cwd=work / "hw", check=True)
    whole = graded(
        grade(
            write_zip(
                tmp_path / "whole.zip", {**package, "hw/whole.pt": (work / "hw/whole.pt").read_bytes()}
            ),
            PHONE,
        )
    )
    assert whole.discovery["found"]["weights"]["format"] == "module"
    toml = '[model]\nfile = "models/net.py"\nname = "PhonePriceModel"\nweights = "w.pt"\n[model.kwargs]\ninput_dim = 20\noutput_dim = 4\n'
    files = {**package, "hw/homework.toml": toml, "hw/w.pt": weights_bytes(phone_state_dict(), tmp_path)}
    graded(grade(write_zip(tmp_path / "manifest.zip", files), PHONE))


def test_manifest_with_function_factory_and_preprocess_chain(tmp_path: Path) -> None:
    src = PHONE_MODEL + textwrap.dedent(
        """
        def build(width=16):
            return PhonePriceModel(20, 4)

        def preprocess(batch):
            import numpy as np
            assert batch.dtype == np.float32 and batch.shape[1] == 20
            return batch / 1000.0
        """
    )
    toml = textwrap.dedent(
        """
        [model]
        file = "code/model.py"
        name = "build"
        kwargs = { width = 16 }
        weights = "weights/final.bin"

        [preprocess]
        name = "preprocess"
        """
    )
    z = write_zip(
        tmp_path / "hw.zip",
        {
            "homework.toml": toml,
            "code/model.py": src,
            "weights/final.bin": weights_bytes(phone_state_dict(), tmp_path),
        },
    )
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["preprocess"] == "code/model.py:preprocess"
    assert report.discovery["plan"]["source"] == "manifest"


PREPROCESS_RETURNS = {
    "array": "batch / 1000.0",
    "float64 array": "(batch / 1000.0).astype('float64')",
    "tensor": "torch.from_numpy(batch / 1000.0)",
    "DataFrame": "pd.DataFrame(batch / 1000.0, columns=[f'c{i}' for i in range(batch.shape[1])])",
    "list": "(batch / 1000.0).tolist()",
}


@pytest.mark.parametrize("returns", [*PREPROCESS_RETURNS, "dict", "one row"])
def test_a_preprocess_function_may_return_any_array_of_numbers(tmp_path: Path, returns: str) -> None:
    """HOMEWORK.md: "whatever the chain returns becomes a float32 tensor for the model". A DataFrame
    and a list were bad_output, with a message about the model's outputs."""
    expr = PREPROCESS_RETURNS.get(returns) or {"dict": "{'x': batch}", "one row": "batch[:1]"}[returns]
    src = PHONE_MODEL + f"\nimport pandas as pd\n\ndef preprocess(batch):\n    return {expr}\n"
    toml = (
        '[model]\nfile = "model.py"\nname = "PhonePriceModel"\nkwargs = { input_dim = 20, output_dim = 4 }\n'
    )
    toml += 'weights = "w.pt"\n[preprocess]\nname = "preprocess"\n'
    z = write_zip(
        tmp_path / "hw.zip",
        {"homework.toml": toml, "model.py": src, "w.pt": weights_bytes(phone_state_dict(), tmp_path)},
    )
    report = grade(z, PHONE)
    if returns in PREPROCESS_RETURNS:
        graded(report)
        assert report.discovery["found"]["preprocess"] == "model.py:preprocess"
        return
    failed(report, ErrorCode.bad_output)
    assert "Your preprocess function preprocess returned" in report.error.message
    assert "预处理函数 preprocess" in report.error.message_zh and "Your" not in report.error.message_zh


def test_a_manifest_saved_as_gbk_is_read(tmp_path: Path) -> None:
    # Notepad on a Chinese Windows saves GBK by default; file names in the zip may be GBK too.
    toml = '[model]\nfile = "模型/网络.py"\nname = "PhonePriceModel"\nkwargs = { input_dim = 20, output_dim = 4 }\nweights = "模型/权重.bin"\n'
    z = write_zip(
        tmp_path / "hw.zip",
        {
            "homework.toml": toml.encode("gbk"),
            "模型/网络.py": PHONE_MODEL,
            "模型/权重.bin": weights_bytes(phone_state_dict(), tmp_path),
        },
    )
    report = graded(grade(z, PHONE))
    assert report.discovery["plan"]["source"] == "manifest"
    assert "模型/网络.py" in str(report.discovery["found"]["model"]), report.discovery["found"]


def test_scaler_in_manifest_receives_a_dataframe_with_column_names(tmp_path: Path) -> None:
    import pickle

    from sklearn.preprocessing import StandardScaler

    from grader.datasets import PHONE_PRICE_COLUMNS, load_hidden

    hidden = load_hidden("phone-price", None)
    import pandas as pd

    scaler = StandardScaler().fit(pd.DataFrame(hidden.x, columns=PHONE_PRICE_COLUMNS))
    toml = '[model]\nfile = "model.py"\nname = "PhonePriceModel"\nkwargs = { input_dim = 20, output_dim = 4 }\nweights = "m.bin"\n[preprocess]\ntransformer = "scaler.pkl"\n'
    z = write_zip(
        tmp_path / "hw.zip",
        {
            "homework.toml": toml,
            "model.py": PHONE_MODEL,
            "m.bin": weights_bytes(phone_state_dict(), tmp_path),
            "scaler.pkl": pickle.dumps(scaler),
        },
    )
    report = graded(grade(z, PHONE))
    assert report.discovery["found"]["transformer"] == "scaler.pkl"
    assert not any("scaler" in h.en.lower() and "near chance" in h.en for h in report.hints)


def test_the_one_scaler_among_several_pickles_is_applied(tmp_path: Path) -> None:
    """scaler.pkl beside a training history pickle: no scaler was applied (it needs one pickle alone),
    and the hint said to ship the scaler the zip had. Two scalers: none is guessed, and the hint says so."""
    import pickle

    import pandas as pd
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from grader.datasets import PHONE_PRICE_COLUMNS, load_hidden

    features = pd.DataFrame(load_hidden("phone-price", None).x, columns=PHONE_PRICE_COLUMNS)
    files = {
        "model.py": PHONE_MODEL,
        "m.bin": weights_bytes(phone_state_dict(), tmp_path),
        "scaler.pkl": pickle.dumps(StandardScaler().fit(features)),
        "history.pkl": pickle.dumps({"loss": [1.2, 0.8, 0.5]}),
    }
    report = graded(grade(write_zip(tmp_path / "one.zip", files), PHONE))
    assert report.discovery["found"]["transformer"] == "scaler.pkl"
    assert any("of the 2 pickles in your zip, the only scaler" in h.en for h in report.hints)
    files["minmax.pkl"] = pickle.dumps(MinMaxScaler().fit(features))
    report = graded(grade(write_zip(tmp_path / "two.zip", files), PHONE))
    assert "transformer" not in report.discovery["found"]
    hint = next(h for h in report.hints if "Several pickles" in h.en)
    assert "minmax.pkl, scaler.pkl" in hint.en and "minmax.pkl, scaler.pkl" in hint.zh


def test_two_different_matching_classes_are_ambiguous_with_a_manifest_hint(tmp_path: Path) -> None:
    other = PHONE_MODEL.replace("PhonePriceModel", "OtherModel").replace("torch.relu", "torch.sigmoid")
    z = write_zip(
        tmp_path / "hw.zip",
        {"a.py": PHONE_MODEL, "b.py": other, "m.bin": weights_bytes(phone_state_dict(), tmp_path)},
    )
    report = failed(grade(z, PHONE), ErrorCode.ambiguous_model)
    assert "a.py:PhonePriceModel" in report.error.message and "b.py:OtherModel" in report.error.message
    assert "[model]" in report.error.message and "homework.toml" in report.error.message_zh


def test_jupyter_checkpoint_copies_and_tool_folders_are_not_candidates(tmp_path: Path) -> None:
    """Jupyter saves an older copy of model.py as .ipynb_checkpoints/model-checkpoint.py; with a
    different class in it the zip was ambiguous_model, its suggested manifest naming the stale copy."""
    stale = PHONE_MODEL.replace("PhonePriceModel", "OldModel").replace("16", "32")
    files = {
        "hw/model.py": PHONE_MODEL,
        "hw/.ipynb_checkpoints/model-checkpoint.py": stale,
        "hw/.ipynb_checkpoints/w-checkpoint.pt": b"an older save",
        "hw/__pycache__/model.cpython-311.pyc": b"",
        "hw/w.pt": weights_bytes(phone_state_dict(), tmp_path),
    }
    report = graded(grade(write_zip(tmp_path / "hw.zip", files), PHONE))
    assert report.discovery["found"]["model"]["class"] == "PhonePriceModel"


def test_same_class_copied_into_two_files_is_not_ambiguous(tmp_path: Path) -> None:
    z = write_zip(
        tmp_path / "hw.zip",
        {
            "model.py": PHONE_MODEL,
            "train.py": PHONE_MODEL,
            "m.bin": weights_bytes(phone_state_dict(), tmp_path),
        },
    )
    graded(grade(z, PHONE))


def test_no_matching_class_names_candidates_and_shapes(tmp_path: Path) -> None:
    wrong = PHONE_MODEL.replace("nn.Linear(input_dim, 16)", "nn.Linear(input_dim, 32)").replace(
        "nn.Linear(16,", "nn.Linear(32,"
    )
    z = write_zip(
        tmp_path / "hw.zip", {"model.py": wrong, "m.bin": weights_bytes(phone_state_dict(), tmp_path)}
    )
    report = failed(grade(z, PHONE), ErrorCode.no_model_found)
    assert "model.py:PhonePriceModel" in report.error.message
    assert "linear1.weight" in report.error.message and "(16, 20)" in report.error.message


@pytest.mark.parametrize(
    ("files", "code", "needle"),
    [
        ({}, ErrorCode.no_model_found, "No weights file"),
        ({"a.pt": b"x", "b.pt": b"y"}, ErrorCode.ambiguous_model, "a.pt, b.pt"),
        ({"homework.toml": "[model\nfile=", "m.bin": b"x"}, ErrorCode.bad_manifest, "not valid TOML"),
        (
            {"homework.toml": '[model]\nfile = "nope.py"\nname = "X"\nweights = "m.bin"', "m.bin": b"x"},
            ErrorCode.bad_manifest,
            "no such file",
        ),
        ({"m.bin": b"not a torch file"}, ErrorCode.load_failed, "m.bin"),
        # Both were `internal`, with the grader's own traceback shown to the student.
        ({"homework.toml": "x = " + "[" * 50_000, "m.bin": b"x"}, ErrorCode.bad_manifest, "too deeply"),
        (
            {"homework.toml": b"[model]\nfile = '\xff\xfe.py'\n", "m.bin": b"x"},
            ErrorCode.bad_manifest,
            "Save it as UTF-8",
        ),
        # Both were `crashed` ("Your code raised TypeError: attribute name must be string").
        (
            {"homework.toml": '[model]\nfile = "model.py"\nname = 5\nweights = "m.bin"', "m.bin": b"x"},
            ErrorCode.bad_manifest,
            'e.g. name = "PhonePriceModel" (it is 5)',
        ),
        (
            {
                "homework.toml": '[model]\nweights = "m.bin"\n[preprocess]\nfile = "model.py"\nname = ["f"]',
                "m.bin": b"x",
            },
            ErrorCode.bad_manifest,
            "[preprocess] `name` must be",
        ),
    ],
)
def test_layout_problems_have_specific_codes(
    tmp_path: Path, files: dict, code: ErrorCode, needle: str
) -> None:
    z = write_zip(tmp_path / "hw.zip", {"model.py": PHONE_MODEL, **files})
    report = failed(grade(z, PHONE), code)
    assert needle in report.error.message


def test_script_reading_its_csv_at_import(tmp_path: Path) -> None:
    src = "import pandas as pd\ndata = pd.read_csv('data/手机价格预测.csv')\n" + PHONE_MODEL
    w = weights_bytes(phone_state_dict(), tmp_path)
    missing = write_zip(tmp_path / "missing.zip", {"model.py": src, "m.bin": w})
    report = failed(grade(missing, PHONE), ErrorCode.import_failed)
    assert "手机价格预测.csv" in report.error.message and '__name__ == "__main__"' in report.error.message
    shipped = write_zip(
        tmp_path / "shipped.zip", {"model.py": src, "m.bin": w, "data/手机价格预测.csv": "a,b\n1,2\n"}
    )
    graded(grade(shipped, PHONE))
    # The script in a folder of its own, its data beside it (it reads them from where it was run):
    # "reads a file that is not in the zip", though it was.
    for read in (
        "pd.read_csv('data/手机价格预测.csv')",
        "__import__('numpy').loadtxt('data/手机价格预测.csv', delimiter=',')",
    ):
        beside = write_zip(
            tmp_path / "beside.zip",
            {
                "src/model.py": src.replace("pd.read_csv('data/手机价格预测.csv')", read),
                "src/data/手机价格预测.csv": "1,2\n3,4\n",
                "weights/m.bin": w,
            },
        )
        graded(grade(beside, PHONE))


def test_course_style_top_level_torchsummary_import_works(tmp_path: Path) -> None:
    src = "from torchsummary import summary\n" + PHONE_MODEL
    z = write_zip(
        tmp_path / "hw.zip", {"model.py": src, "m.bin": weights_bytes(phone_state_dict(), tmp_path)}
    )
    graded(grade(z, PHONE))


def test_class_indices_are_accepted_and_double_softmax_gets_a_hint(
    tmp_path: Path, phone_zip: Callable[..., Path]
) -> None:
    indices = graded(grade(phone_zip(forward="return torch.zeros(len(x), dtype=torch.long) + 1"), PHONE))
    assert indices.metrics["output_form"] == "indices"
    assert any("class 1 for every" in h.en for h in indices.hints)
    double = graded(
        grade(
            phone_zip(
                forward="return torch.softmax(torch.softmax(torch.randn(len(x), 4), 1), 1)", name="d.zip"
            ),
            PHONE,
        )
    )
    assert any("softmax applied twice" in h.en for h in double.hints)


def test_near_chance_without_scaler_explains_the_fix(phone_zip: Callable[..., Path]) -> None:
    report = graded(grade(phone_zip(), PHONE))
    assert report.score < 0.6 and not report.passed
    hint = next(h for h in report.hints if "scaler" in h.en)
    assert 'transformer = "scaler.pkl"' in hint.en and "StandardScaler" in hint.zh


MNIST_MLP = """
import torch
from torch import nn
class MLP(nn.Module):
    def __init__(self, input_size=784, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(input_size, 32)
        self.fc2 = nn.Linear(32, num_classes)
    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
"""


def test_mnist_model_expecting_flat_input_is_flattened_with_a_hint(tmp_path: Path) -> None:
    ns: dict = {}
    exec(MNIST_MLP, ns)  # noqa: S102
    z = write_zip(
        tmp_path / "hw.zip",
        {"mlp.py": MNIST_MLP, "mlp.pt": weights_bytes(ns["MLP"]().state_dict(), tmp_path)},
    )
    report = graded(grade(z, MNIST))
    assert report.discovery["found"]["flattened_input"] is True
    assert any("flattened" in h.en for h in report.hints)
    assert report.dataset is not None and report.dataset.n > 1000


def test_mnist_normalize_is_applied(tmp_path: Path) -> None:
    src = MNIST_MLP.replace(
        "return self.fc2",
        "assert float(x.min()) < -0.4, 'normalize was not applied'\n        return self.fc2",
    ).replace("def forward(self, x):\n", "def forward(self, x):\n        x = x.view(x.size(0), -1)\n")
    ns: dict = {}
    exec(MNIST_MLP, ns)  # noqa: S102
    toml = '[model]\nfile = "mlp.py"\nname = "MLP"\nweights = "mlp.pt"\n[preprocess]\nnormalize = [0.1307, 0.3081]\n'
    z = write_zip(
        tmp_path / "hw.zip",
        {"homework.toml": toml, "mlp.py": src, "mlp.pt": weights_bytes(ns["MLP"]().state_dict(), tmp_path)},
    )
    report = graded(grade(z, MNIST))
    assert report.discovery["found"]["normalize"] == [0.1307, 0.3081]
    assert "flattened_input" not in report.discovery["found"]


def test_flatten_retry_starts_from_inputs_the_failed_forward_did_not_touch(tmp_path: Path) -> None:
    # Batches are views of the evaluation's own copy of the inputs: a forward() that writes them in
    # place and then fails on the 4-D shape must not leave the flattened retry with what it wrote.
    ns: dict = {}
    exec(MNIST_MLP, ns)  # noqa: S102
    weights = weights_bytes(ns["MLP"]().state_dict(), tmp_path)
    vandal = MNIST_MLP.replace(
        "def forward(self, x):\n", "def forward(self, x):\n        if x.dim() > 2:\n            x.mul_(0)\n"
    )
    clean = graded(grade(write_zip(tmp_path / "clean.zip", {"mlp.py": MNIST_MLP, "mlp.pt": weights}), MNIST))
    touched = graded(grade(write_zip(tmp_path / "vandal.zip", {"mlp.py": vandal, "mlp.pt": weights}), MNIST))
    assert touched.discovery["found"]["flattened_input"] is True
    predicted = [sum(col) for col in zip(*clean.metrics["confusion_matrix"], strict=True)]
    assert sum(1 for n in predicted if n) > 1  # the clean run's predictions depend on the input
    assert touched.metrics["confusion_matrix"] == clean.metrics["confusion_matrix"]


def _mnist_zip(tmp_path: Path, name: str, files: dict[str, bytes | str]) -> Path:
    ns: dict = {}
    exec(MNIST_MLP, ns)  # noqa: S102
    return write_zip(tmp_path / name, {"mlp.pt": weights_bytes(ns["MLP"]().state_dict(), tmp_path), **files})


def test_two_weights_files_suggest_a_manifest_that_works_for_the_zip_at_hand(tmp_path: Path) -> None:
    # The suggested homework.toml names one weights file only: pasted into the zip as it is, the
    # zip is graded (it used to show the phone-price example's class and kwargs, for any zip).
    files: dict[str, bytes | str] = {"mlp.py": MNIST_MLP}
    two = _mnist_zip(tmp_path, "two.zip", {**files, "mlp_best.pt": b"later epoch"})
    report = failed(grade(two, MNIST), ErrorCode.ambiguous_model)
    assert "mlp.pt, mlp_best.pt" in report.error.message and "PhonePriceModel" not in report.error.message
    manifest = report.error.message[report.error.message.index("[model]") :]
    assert manifest == report.error.message_zh[report.error.message_zh.index("[model]") :]
    fixed = _mnist_zip(
        tmp_path, "fixed.zip", {**files, "mlp_best.pt": b"later epoch", "homework.toml": manifest}
    )
    graded(grade(fixed, MNIST))


@pytest.mark.parametrize(
    ("top", "code", "says"),
    [
        # A course script's first line; only training uses it.
        ("import torchvision\n", ErrorCode.import_failed, ["not 'torchvision'", "move that import"]),
        ("from .layers import Block\n", ErrorCode.import_failed, ["without the dot", "from layers import"]),
        (
            "import os, time\nfor _ in range(2000):\n    if os.fork() == 0:\n        time.sleep(20)\n        os._exit(0)\n",
            ErrorCode.process_limit,
            ["too many processes or threads", "num_workers=0"],
        ),
        (
            "import threading, time\nfor _ in range(3000):\n    threading.Thread(target=time.sleep, args=(20,), daemon=True).start()\n",
            ErrorCode.process_limit,
            ["too many processes or threads"],
        ),
    ],
)
def test_import_failures_name_the_fix(tmp_path: Path, top: str, code: ErrorCode, says: list[str]) -> None:
    report = failed(grade(_mnist_zip(tmp_path, "hw.zip", {"mlp.py": top + MNIST_MLP}), MNIST), code)
    for phrase in says:
        assert phrase in report.error.message, report.error.message
    assert report.error.message_zh != report.error.message


def test_torch_out_of_memory_in_forward_is_memory_limit_with_the_limit(tmp_path: Path) -> None:
    # torch's allocator fails under RLIMIT_AS with a RuntimeError, not a MemoryError.
    src = MNIST_MLP.replace("return self.fc2", "big = torch.ones(20 * 1024**3 // 4)\n        return self.fc2")
    report = failed(grade(_mnist_zip(tmp_path, "hw.zip", {"mlp.py": src}), MNIST), ErrorCode.memory_limit)
    assert f"limit {MNIST.memory_mb} MB" in report.error.message and "in batches" in report.error.message
    assert f"{MNIST.memory_mb} MB" in report.error.message_zh


WIDE = """
import torch
from torch import nn
class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 10)
    def forward(self, x):
        # 256 copies of each image: 800 KB a sample, 4 GB for the 5,000 practice images at once (as
        # a CNN's feature maps are), over the 4096 MB limit; a few hundred MB in smaller batches.
        h = x.repeat(1, 256, 1, 1)
        return self.fc(h[:, :128].mean(dim=(2, 3)))
"""


def test_a_model_too_big_for_the_whole_test_set_at_once_is_run_in_smaller_batches(tmp_path: Path) -> None:
    """The grader's first batch is all 10,000 images; the pytorch/examples MNIST CNN needs 1.5 GB for
    one of its feature maps there, and was `bad_output` ("can't allocate memory")."""
    ns: dict = {}
    exec(WIDE, ns)  # noqa: S102
    z = write_zip(
        tmp_path / "hw.zip", {"wide.py": WIDE, "wide.pt": weights_bytes(ns["Wide"]().state_dict(), tmp_path)}
    )
    report = graded(grade(z, MNIST))
    assert report.dataset is not None and report.dataset.n > 1000
    assert 0 < report.discovery["found"]["batch_size"] < report.dataset.n


def test_threads_started_in_forward_past_the_limit_are_process_limit(tmp_path: Path) -> None:
    src = MNIST_MLP.replace(
        "return self.fc2",
        "import threading, time\n        for _ in range(3000):\n"
        "            threading.Thread(target=time.sleep, args=(20,), daemon=True).start()\n        return self.fc2",
    )
    report = failed(grade(_mnist_zip(tmp_path, "hw.zip", {"mlp.py": src}), MNIST), ErrorCode.process_limit)
    assert f"the limit is {MNIST.max_processes}" in report.error.message


def test_a_network_built_as_a_variable_gets_the_function_to_write(tmp_path: Path) -> None:
    # A notebook-style script: the model is a module-level nn.Sequential, no class to construct.
    seq = "from torch import nn\nmodel = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))\n"
    ns: dict = {}
    exec(seq, ns)  # noqa: S102
    w = weights_bytes(ns["model"].state_dict(), tmp_path)
    report = failed(
        grade(write_zip(tmp_path / "a.zip", {"net.py": seq, "net.pt": w}), MNIST), ErrorCode.no_model_found
    )
    assert "model = Sequential(...)" in report.error.message and "def build_model():" in report.error.message
    assert "build_model" in report.error.message_zh
    manifest = report.error.message[report.error.message.index("[model]") :]
    fixed = seq.replace("model = nn.Sequential", "def build_model():\n    return nn.Sequential")
    graded(
        grade(write_zip(tmp_path / "b.zip", {"net.py": fixed, "net.pt": w, "homework.toml": manifest}), MNIST)
    )


def test_a_failure_of_the_grader_itself_keeps_its_traceback_out_of_the_students_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report calls logs_tail "Output of your code"; the grader's traceback was put there.
    from grader.evaluators.models import EVALUATOR

    def broken_score(*args: object, **kwargs: object) -> None:
        raise RuntimeError("GRADER-SIDE-BUG")

    monkeypatch.setattr(EVALUATOR, "score", broken_score)
    src = PHONE_MODEL + "\nprint('STUDENT-PRINTED')\n"
    z = write_zip(
        tmp_path / "hw.zip", {"model.py": src, "m.bin": weights_bytes(phone_state_dict(), tmp_path)}
    )
    report = failed(grade(z, PHONE), ErrorCode.internal)
    assert "STUDENT-PRINTED" in report.logs_tail  # the student's own output is still theirs to see
    assert "GRADER-SIDE-BUG" not in report.logs_tail and "Traceback" not in report.logs_tail
    assert "RuntimeError: GRADER-SIDE-BUG" in report.grader_traceback
    assert "broken_score" in report.grader_traceback


def test_both_kinds_of_assignment_name_the_same_importable_libraries(tmp_path: Path) -> None:
    """The model and the function messages listed different libraries, neither scipy nor joblib."""
    import importlib

    from grader.harness import main as harness_main

    for name in harness_main.AVAILABLE:
        importlib.import_module({"scikit-learn": "sklearn"}.get(name, name))  # the list is true here
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in harness_main.AVAILABLE)
    model = failed(
        grade(_mnist_zip(tmp_path, "m.zip", {"mlp.py": "import tqdm\n" + MNIST_MLP}), MNIST),
        ErrorCode.import_failed,
    )
    function = failed(
        grade(
            write_zip(tmp_path / "f.zip", {"activations.py": "import tqdm\n"}), get_assignment("activations")
        ),
        ErrorCode.import_failed,
    )
    for report in (model, function):
        assert harness_main.AVAILABLE_EN in report.error.message, report.error.message
        assert harness_main.AVAILABLE_ZH in report.error.message_zh


def test_an_exception_in_forward_names_the_students_line_and_what_to_do(tmp_path: Path) -> None:
    """It was "Your code raised KeyError: 'b'": no file, no line, no next step."""
    src = PHONE_MODEL.replace(
        "return self.linear2(torch.relu(self.linear1(x)))",
        "parts = {'a': x}\n        return self.linear2(torch.relu(self.linear1(parts['b'])))",
    )
    assert src != PHONE_MODEL
    z = write_zip(
        tmp_path / "hw.zip", {"hw/net.py": src, "hw/w.pt": weights_bytes(phone_state_dict(), tmp_path)}
    )
    report = failed(grade(z, PHONE), ErrorCode.crashed)
    line = src.splitlines().index("        return self.linear2(torch.relu(self.linear1(parts['b'])))") + 1
    assert f"KeyError: 'b' at net.py line {line}, in forward: `return self.linear2(" in report.error.message
    assert "hwgrade check" in report.error.message
    assert f"net.py 第 {line} 行，forward 中" in report.error.message_zh


def test_a_model_trained_in_float64_gets_its_inputs_in_float64(tmp_path: Path) -> None:
    """torch.set_default_dtype(torch.float64) at the top of the model file: the model's layers are
    float64, and the float32 test inputs were bad_output "mat1 and mat2 must have the same dtype"."""
    src = "import torch\ntorch.set_default_dtype(torch.float64)\n" + PHONE_MODEL
    z = write_zip(
        tmp_path / "hw.zip", {"model.py": src, "m.bin": weights_bytes(phone_state_dict(), tmp_path)}
    )
    graded(grade(z, PHONE))
