"""Every graph the importer writes for the GPU runs wholly on ONNX Runtime's CUDA provider: no
node falls back to the CPU (which would cost a copy across the bus each step and rule out CUDA
graph capture). Checked against the provider's kernel list, kept as data (cuda_kernels.json)."""
import subprocess

import pytest

from conftest import CONFIGS, REPO, run_import
from inferd_import.placement import check_file

# GroupQueryAttention has CUDA kernels for float16 and bfloat16 only: the genai layout with
# float32 activations (fp32, and int4 weights over float32) is a CPU graph. See docs/models.md.
CPU_ONLY = {("fp32", "genai"), ("int4", "genai")}


def imported(tmp_path, gguf, precision, layout):
    name = f"t-{precision}-{layout}"
    run_import(["--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf, "--name", name,
                "--precision", precision, "--layout", layout, "--models", tmp_path])
    return tmp_path / name / "model.onnx"


@pytest.mark.parametrize("layout", ["optimum", "genai"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int4"])
def test_imported_graphs_have_a_cuda_kernel_for_every_node(tmp_path, gguf, precision, layout):
    off = check_file(imported(tmp_path, gguf, precision, layout))
    if (precision, layout) in CPU_ONLY:
        # The check sees what the kernel list says: float32 GroupQueryAttention is not on it.
        assert ("com.microsoft/GroupQueryAttention", "T=float") in off, off
    else:
        assert off == [], off


@pytest.mark.parametrize("layout", ["optimum", "genai"])
@pytest.mark.parametrize("precision", ["native", "fp32", "fp16", "int4"])
def test_the_native_importers_graphs_have_a_cuda_kernel_for_every_node(tmp_path, gguf, precision, layout):
    """The same for the Rust importer (`inferctl import`), on the real SmolLM2 GGUF: its
    transcoded blocks (MatMulNBits with uint8 zero points, GatherBlockQuantized, the minimums'
    term) included."""
    inferctl = REPO / "target" / "debug" / "inferctl"
    p = subprocess.run([inferctl, "import", gguf, "--name", "m", "--precision", precision, "--layout", layout,
                        "--models", tmp_path], capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert p.returncode == 0, p.stderr
    off = check_file(tmp_path / "m" / "model.onnx")
    if layout == "genai" and precision != "fp16":
        assert ("com.microsoft/GroupQueryAttention", "T=float") in off, off
        assert "note: on CUDA" in p.stderr, p.stderr
    else:
        assert off == [], off
        assert "note" not in p.stderr, p.stderr


def test_the_kernel_list_catches_what_cuda_lacks():
    from onnx import TensorProto, helper

    from inferd_import.placement import off_cuda

    def graph(op, elem, n_in=1, domain=""):
        ins = [helper.make_tensor_value_info(f"x{i}", elem, [2]) for i in range(n_in)]
        y = helper.make_tensor_value_info("y", elem, [2])
        node = helper.make_node(op, [i.name for i in ins], ["y"], domain=domain)
        return helper.make_model(helper.make_graph([node], "g", ins, [y]),
                                 opset_imports=[helper.make_opsetid(d, v) for d, v in {"": 17, domain: 1}.items()])

    assert off_cuda(graph("Relu", TensorProto.FLOAT)) == []
    # Where has CUDA kernels for numbers, not for bool values.
    assert off_cuda(graph("Where", TensorProto.BOOL, 3)) == [("ai.onnx/Where", "T=bool")]
    assert off_cuda(graph("NoSuchOp", TensorProto.FLOAT, 1, "com.example")) == [
        ("com.example/NoSuchOp", "no CUDA kernel")]
