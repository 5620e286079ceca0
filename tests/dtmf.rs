//! DTMF both ways against independent peers: our RFC 4733 events heard by
//! baresip, and in-band fallback when the peer negotiated no telephone-event.
//! (Digits from the far end: `sipp_calls::rfc4733_digits_from_the_far_end_*`.)

mod common;

use std::time::Duration;

use common::*;

#[test]
fn our_rfc4733_digits_reach_baresip_once_each() {
    let dir = test_dir("dtmf-out");
    let wav = dir.path().join("phone.wav");
    speech_wav(&wav, "Please enter your account number.");
    let phone = Baresip::start(dir.path(), &wav);
    let run = run_call(
        dir.path(),
        &[&phone.uri(), "--dtmf", "2580*#", "--max-duration", "3"],
    );
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert!(phone.wait_call_ended(Duration::from_secs(10)));
    let heard = phone.dtmf_heard();
    assert_eq!(heard, "2580*#", "baresip log:\n{}", tail(&phone.log(), 40));
}
