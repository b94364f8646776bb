"""Logits of the imported graph against the independent numpy forward pass."""
import numpy as np
import onnx

from conftest import CONFIGS, GGUF, run_import
from decode import Decoder
from reference import forward


def test_tiny_qwen2_logits_match_numpy_reference(tiny_qwen2):
    from inferd_import.sources.gguf_file import GgufSource
    from inferd_import.sources.random_init import RandomSource

    src = RandomSource(CONFIGS / "tiny-qwen2.json", GgufSource(GGUF), 0)
    ids = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47]
    want = forward(src.arch, src.tensor, np.array(ids))
    got, _ = Decoder(tiny_qwen2).forward(np.array([ids], np.int64), Decoder(tiny_qwen2).empty_past(), 0)
    np.testing.assert_allclose(got[0], want, atol=1e-4, rtol=0)
    assert src.arch.attention_bias and src.arch.num_kv_heads < src.arch.num_heads  # q/k/v bias and GQA exercised


def test_num_logits_to_keep_limits_the_head_to_the_last_positions(tiny_qwen2):
    d = Decoder(tiny_qwen2)
    ids = np.array([[1, 4093, 198, 1780, 314]], np.int64)
    full, _ = d.forward(ids, d.empty_past(), 0)
    feed = {"input_ids": ids, "attention_mask": np.ones((1, 5), np.int64), "position_ids": np.arange(5)[None], **d.empty_past()}
    last = d.sess.run(["logits"], feed | {"num_logits_to_keep": np.array([1], np.int64)})[0]
    assert full.shape[1] == 5 and last.shape[1] == 1, "left out, every position has logits"
    np.testing.assert_allclose(last[0, 0], full[0, -1], atol=1e-6)


def test_genai_layout_decodes_like_the_optimum_layout(tmp_path, tiny_qwen2):
    """The onnxruntime-genai builder's layout (GroupQueryAttention, no position_ids, symbolic
    head size): the same logits, and onnxruntime-genai itself decodes it as we do."""
    import onnxruntime_genai as og

    run_import(["--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", GGUF, "--name", "g", "--precision", "fp32",
                "--layout", "genai", "--models", tmp_path])
    folder = tmp_path / "g"
    d, ref = Decoder(folder), Decoder(tiny_qwen2)
    assert not d.position_ids and d.sess.get_inputs()[3].shape[3] == "head_size"
    assert any(n.op_type == "GroupQueryAttention" for n in onnx.load(str(folder / "model.onnx")).graph.node)
    ids = [1, 4093, 198, 1780, 314]
    a, past_a = d.forward(np.array([ids], np.int64), d.empty_past(), 0)
    b, past_b = ref.forward(np.array([ids], np.int64), ref.empty_past(), 0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    a, _ = d.forward(np.array([[260]], np.int64), past_a, len(ids))
    b, _ = ref.forward(np.array([[260]], np.int64), past_b, len(ids))
    np.testing.assert_allclose(a, b, atol=1e-4)

    want = ref.greedy(ids, 12)
    m = og.Model(str(folder))
    p = og.GeneratorParams(m)
    p.set_search_options(max_length=len(ids) + 12, do_sample=False)
    g = og.Generator(m, p)
    g.append_tokens(ids)
    while not g.is_done():
        g.generate_next_token()
    assert [int(t) for t in g.get_sequence(0)][len(ids):] == want
