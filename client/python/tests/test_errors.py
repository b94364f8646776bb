"""Offline: the exception classes mirror the Rust enum (client/src/error.rs, the source of
truth) and the documented names, and tensors encode as the daemon expects."""

import re
import struct

import pytest

import inferd_client
from inferd_client import errors, tensors
from conftest import ROOT


def rust_error_variants():
    """The variants of `pub enum Error` in client/src/error.rs, less the transport's `ZBus`."""
    src = (ROOT / "client" / "src" / "error.rs").read_text()
    body = re.search(r"pub enum Error \{(.*?)\n\}", src, re.S).group(1)
    names = re.findall(r"^\s{4}([A-Z]\w*)\(", body, re.M)
    assert "ZBus" in names, "the parser no longer finds the enum's variants"
    return set(names) - {"ZBus"}


def documented_error_names():
    """The names in docs/dbus.md's error table."""
    text = (ROOT / "docs" / "dbus.md").read_text()
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_one_class_per_rust_variant_and_documented_name():
    variants = rust_error_variants()
    assert variants == set(errors.BY_NAME)
    assert documented_error_names() == variants
    for name in variants:
        cls = getattr(inferd_client, name)
        assert issubclass(cls, inferd_client.InferdError)
        e = errors.from_dbus(f"org.inferd.Inferd1.Error.{name}", "why (request d1-2)")
        assert type(e) is cls
        assert e.dbus_name == f"org.inferd.Inferd1.Error.{name}"
        assert e.message == "why (request d1-2)"
        # MQTT's code for the same error comes back as the same class.
        assert type(errors.from_mqtt(e.code, "m")) is cls


def test_mqtt_codes_map_as_the_rust_client_maps_them():
    """client/src/mqtt.rs `error_from_code`: every code it knows maps to the same D-Bus name."""
    src = (ROOT / "client" / "src" / "mqtt.rs").read_text()
    body = src.split("pub fn error_from_code", 1)[1].split("\n}", 1)[0]
    arms = re.findall(r'((?:"\w+"(?:\s*\|\s*)?)+)\s*=>\s*Error::(\w+)', body)
    assert len(arms) >= 8
    for codes, variant in arms:
        for code in re.findall(r'"(\w+)"', codes):
            e = errors.from_mqtt(code, "m")
            assert e.dbus_name == f"org.inferd.Inferd1.Error.{variant}", code
    assert isinstance(errors.from_mqtt("too_large", "m"), inferd_client.InvalidInput)
    assert type(errors.from_mqtt("something_new", "m")) is inferd_client.Internal


def test_foreign_dbus_errors_are_transport_errors():
    e = errors.from_dbus("org.freedesktop.DBus.Error.ServiceUnknown", "no owner")
    assert isinstance(e, inferd_client.TransportError)
    assert e.dbus_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    assert type(errors.from_dbus("org.inferd.Inferd1.Error.Novel", "m")) is inferd_client.Internal


def test_tensors_without_numpy_pack_little_endian():
    t = inferd_client.Tensor.from_values("float16", [1, 3], [0.5, 1, -2])
    assert t.data == struct.pack("<3e", 0.5, 1, -2)
    assert t.tolist() == [0.5, 1.0, -2.0]
    wire = tensors.to_json({"x": t})["x"]
    assert tensors.from_json(wire) == t
    flags = tensors.from_json({"dtype": "bool", "shape": [2], "data": [True, False]})
    assert flags.data == b"\x01\x00"
    with pytest.raises(inferd_client.InvalidInput, match="needs 8 bytes"):
        inferd_client.Tensor("int64", [1], b"\x00")
    with pytest.raises(inferd_client.InvalidInput, match="unknown dtype"):
        inferd_client.Tensor("float64", [1], b"\x00" * 8)


def test_numpy_arrays_keep_their_dtype_or_are_refused():
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    t = tensors.to_tensor("a", a)
    assert (t.dtype, t.shape, t.data) == ("int32", (2, 3), a.astype("<i4").tobytes())
    np.testing.assert_array_equal(t.numpy(), a)
    # A transposed (non-contiguous) array goes row-major as it reads.
    assert tensors.to_tensor("a", a.T).tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(inferd_client.InvalidInput, match="float64"):
        tensors.to_tensor("x", np.zeros(2))
