"""Shared fixtures for the Python client's tests.

The live tests run against a real inferd started by tests/tests/python_client.rs, which says
where through the environment:

- INFERD_DBUS_ADDRESS: the private bus inferd serves on;
- INFERD_MQTT_URL and INFERD_MQTT_NODE: the mosquitto broker and inferd's node name.

Without them the live tests are skipped and only the offline ones run. The daemon's repository
holds the models named below. References are independent of inferd: Python onnxruntime's
MiniLM embeddings and transformers' greedy SmolLM2 text, recorded in tests/fixtures.
"""

import json
import os
import pathlib

import jsonschema
import pytest

import inferd_client
from inferd_client import _mqtt_core

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"

EMBED, LLM, ENDLESS, CLASSIFIER, TENSOR = "minilm", "smollm2-fp32", "tiny", "intent", "ops"
#: Generous: a generation may wait behind another on a 2-core machine.
TIMEOUT = 120.0


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run through tests/tests/python_client.rs")
    return value


@pytest.fixture(scope="session")
def bus_address():
    return env("INFERD_DBUS_ADDRESS")


@pytest.fixture(scope="session")
def mqtt_url():
    return env("INFERD_MQTT_URL")


@pytest.fixture(scope="session")
def mqtt_node():
    return env("INFERD_MQTT_NODE")


@pytest.fixture(scope="session")
def client(bus_address):
    with inferd_client.Client(bus_address, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="session")
def mqtt(mqtt_url, mqtt_node):
    with inferd_client.MqttClient(mqtt_url, node=mqtt_node, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture(scope="session")
def minilm_reference():
    return json.loads((FIXTURES / "minilm_reference.json").read_text())["cases"]


@pytest.fixture(scope="session")
def greedy_cases():
    """transformers' greedy SmolLM2 cases: (raw prompt in the chat format, expected text,
    max_tokens, finish reason, prompt tokens, completion tokens)."""
    fx = json.loads((FIXTURES / "smollm2_fp32_greedy.json").read_text())
    out = []
    for case in fx["cases"]:
        ids = case["new_ids"]
        out.append(
            {
                "prompt": fx["chat_format"].replace("{prompt}", case["prompt"]),
                "text": case["text"].removesuffix("<|im_end|>"),
                "max_tokens": len(ids),
                "finish_reason": "stop" if ids[-1] == 2 else "length",
                "prompt_tokens": len(case["prompt_ids"]),
                "completion_tokens": len([i for i in ids if i != 2]),
            }
        )
    return out


#: One input per dtype for the `ops` test model (tests/data/ops): a*2+1, b+b, c+1, d*3, e+1
#: (uint8, wraps), not f.
def ops_inputs(np):
    return {
        "a": np.array([[1, 2, 3]], dtype=np.float32),
        "b": np.array([[0.5, 1, -2]], dtype=np.float16),
        "c": np.array([41], dtype=np.int64),
        "d": np.array([[-4, 5]], dtype=np.int32),
        "e": np.array([255], dtype=np.uint8),
        "f": np.array([True]),
    }


def check_ops_outputs(np, out):
    want = {
        "a_out": np.array([[3, 5, 7]], dtype=np.float32),
        "b_out": np.array([[1, 2, -4]], dtype=np.float16),
        "c_out": np.array([42], dtype=np.int64),
        "d_out": np.array([[-12, 15]], dtype=np.int32),
        "e_out": np.array([0], dtype=np.uint8),
        "f_out": np.array([False]),
    }
    assert set(out) == set(want)
    for name, w in want.items():
        assert out[name].dtype == w.dtype, name
        assert out[name].shape == w.shape, name
        np.testing.assert_array_equal(out[name], w, err_msg=name)


def max_abs_diff(a, b):
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))


def cosine(a, b):
    dot = sum(float(x) * float(y) for x, y in zip(a, b))
    na = sum(float(x) ** 2 for x in a) ** 0.5
    nb = sum(float(y) ** 2 for y in b) ** 0.5
    return dot / (na * nb)


#: The JSON Schema of every MQTT message, generated from the Rust types the daemon and inferctl
#: use (inferd_client::messages).
MQTT_SCHEMA = json.loads((ROOT / "docs" / "mqtt-messages.schema.json").read_text())
INPUTS = {"embed": "TextsInput", "classify": "TextsInput", "generate": "PromptInput",
          "chat": "ChatInput", "infer": "InferInput"}
RESULTS = {"embed": "EmbedResult", "classify": "ClassifyResult", "infer": "InferResult",
           "generate": "GenerateResult", "chat": "GenerateResult"}


@pytest.fixture(scope="session", autouse=True)
def mqtt_messages_follow_the_schema():
    """Records every MQTT message the clients send and receive during the run, and checks each
    against the schema at the end: the Python side and the daemon agree on the shared types."""
    seen, ops = [], {}
    conn = _mqtt_core.Connection
    publish, message = conn._publish, conn._message

    def tapped_publish(self, topic, body, correlation):
        if topic.endswith("/cancel"):
            seen.append(("Cancel", body))
        else:
            op = topic.rsplit("/", 1)[1]
            ops[body["id"]] = op
            seen.extend([("Request", body), (INPUTS[op], body["input"])])
        return publish(self, topic, body, correlation)

    def tapped_message(self, client, userdata, msg):
        try:
            doc = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if msg.topic.endswith("/status"):
                seen.append(("NodeStatus", doc))
            elif "seq" in doc:
                seen.append(("StreamMessage", doc))
            else:
                seen.append(("Reply", doc))
                op = ops.get(str(doc.get("id")))
                if doc.get("ok") and op:
                    seen.append((RESULTS[op], doc["result"]))
        return message(self, client, userdata, msg)

    conn._publish, conn._message = tapped_publish, tapped_message
    yield
    conn._publish, conn._message = publish, message
    if not seen:
        return  # an offline run
    for name, doc in seen:
        schema = {"$schema": MQTT_SCHEMA["$schema"], "$defs": MQTT_SCHEMA["$defs"],
                  "$ref": f"#/$defs/{name}"}
        jsonschema.validate(doc, schema)
    kinds = {name for name, _ in seen}
    assert {"Request", "Cancel", "Reply", "StreamMessage", "NodeStatus", "EmbedResult",
            "ClassifyResult", "InferResult", "GenerateResult"} <= kinds, kinds
