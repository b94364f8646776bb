//! The MQTT handler path with a fake link: any sequence of messages (topics, Response Topics,
//! Correlation Data, DUP, expiry, payloads) goes parse → reply address and policy → grants →
//! dedupe → requests in flight → encode, and nothing inferd would publish goes to a topic it
//! must not publish to, or past the broker's limit (`inferd::fuzz::mqtt_handler` asserts it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| inferd::fuzz::mqtt_handler(data));
