//! Inbound INVITEs at `outdial serve`: taken only from a carrier's address. A profile whose
//! trunk is at 127.0.0.1 and whose `inbound_allow` holds 127.0.0.3: a sipp UAC calling from
//! 127.0.0.1 or 127.0.0.3 is a carrier (answered 480 until inbound calls are routed); from
//! 127.0.0.2 it is nobody's and gets 403.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn invite_from(dir: &std::path::Path, ip: &str, sip_port: u16, code: u16) -> SippRun {
    let at = At {
        netns: None,
        ip: ip.to_string(),
    };
    Sipp::uac(dir, "uac_final.xml", &format!("127.0.0.1:{sip_port}"))
        .at(at)
        .replace("@CODE@", &code.to_string())
        .args(["-s", "15551230777"])
        .start()
        .wait(WAIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_carriers_address_may_call_in() {
    let dir = test_dir("inbound-gate");
    let d = dir.path();
    let http_port = free_tcp_port();
    let sip_port = free_udp_port();
    std::fs::write(
        d.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:{sip_port}\"\nlisten_tcp = false\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            d.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    write_profile(
        &d.join("sip-profiles"),
        "carrier",
        "proxy = \"127.0.0.1:5999\"\ninbound_allow = [\"127.0.0.3/32\"]\n",
    );
    let server = ServeProcess::start(d, http_port);
    // Serving: the trunks were started (and an address resolves at once).
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    while http
        .get(format!("{}/healthz", server.api))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(std::time::Instant::now() < deadline, "serve did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stranger = invite_from(d, "127.0.0.2", sip_port, 403);
    stranger.assert_passed("an INVITE from no carrier's address is refused 403");
    let trunk = invite_from(d, "127.0.0.1", sip_port, 480);
    trunk.assert_passed("the trunk's own address is a carrier");
    let allowed = invite_from(d, "127.0.0.3", sip_port, 480);
    allowed.assert_passed("an inbound_allow network is a carrier");
    drop(server);
}
