//! The MQTT request decoder: any payload is a request or a typed rejection, and any options
//! object is read or refused by the same code D-Bus uses.
#![no_main]

use inferd::work::job::{Priority, Ticket, Transport};
use inferd::frontend::options;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match inferd::fuzz::mqtt_request(data) {
        Ok(req) => {
            assert!(!req.id.is_empty(), "a request without an id was accepted");
            let mut t = Ticket::new(req.id.clone(), Transport::Mqtt, Priority::Background);
            let _ = options::generation(&req.options, &mut t);
            let _ = options::embedding(&req.options, vec![], &mut t);
            let _ = options::classification(&req.options, vec![], &mut t);
        }
        Err(r) => assert!(!r.error.message.is_empty(), "a rejection without a reason"),
    }
});
