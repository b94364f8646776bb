"""A plain greedy decoder over the imported ONNX layout, with Python onnxruntime. Used by the
tests as an independent driver of the graph (the daemon's own decoder comes with the
text-generation issue)."""
import json

import numpy as np
import onnxruntime as ort


class Decoder:
    def __init__(self, folder, threads=2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
        past = [i for i in self.sess.get_inputs() if i.name.startswith("past_key_values.")]
        self.layers = len(past) // 2
        self.kv_heads, self.head_dim = past[0].shape[1], past[0].shape[3]
        if not isinstance(self.head_dim, int):  # symbolic in the genai layout
            self.head_dim = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
        self.position_ids = any(i.name == "position_ids" for i in self.sess.get_inputs())
        self.kv_dtype = np.float16 if past[0].type == "tensor(float16)" else np.float32

    def empty_past(self, batch=1):
        z = np.zeros((batch, self.kv_heads, 0, self.head_dim), self.kv_dtype)
        return {f"past_key_values.{i}.{k}": z for i in range(self.layers) for k in ("key", "value")}

    def forward(self, ids, past, start):
        """Runs ids [B,S] after `start` cached positions; returns logits and the new cache."""
        b, s = ids.shape
        feed = {"input_ids": ids, "attention_mask": np.ones((b, start + s), np.int64), **past}
        if self.position_ids:
            feed["position_ids"] = np.arange(start, start + s, dtype=np.int64)[None].repeat(b, 0)
        names = [o.name for o in self.sess.get_outputs()]
        out = dict(zip(names, self.sess.run(names, feed)))
        new_past = {f"past_key_values.{i}.{k}": out[f"present.{i}.{k}"] for i in range(self.layers) for k in ("key", "value")}
        return out["logits"], new_past

    def greedy(self, prompt_ids, max_new, eos=(), cache=True):
        ids = list(prompt_ids)
        past, start = self.empty_past(), 0
        new = []
        for _ in range(max_new):
            if cache:
                step = ids[start:]
                logits, past = self.forward(np.array([step], np.int64), past, start)
                start = len(ids)
            else:
                logits, _ = self.forward(np.array([ids], np.int64), self.empty_past(), 0)
            nxt = int(np.argmax(logits[0, -1]))
            new.append(nxt)
            ids.append(nxt)
            if nxt in eos:
                break
        return new
