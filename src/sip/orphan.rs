//! Ending a call whose dialog this process does not hold: the node that placed it died, and
//! the call's row in the store kept the dialog's facts ([`DialogFacts`], written at answer).
//! [`bye`] rebuilds the BYE from them (RFC 3261 §12.2.1.1: Call-ID, our From with our tag,
//! their To with their tag, the remote target as Request-URI, the route set, a CSeq above the
//! last one we used) and sends it on a client transaction of the endpoint.
//!
//! A call that was still ringing has no dialog to end, and its INVITE transaction (the Via
//! branch a CANCEL must repeat) died with its node: nothing is sent for it. Its far end rings
//! until its own timer, or answers and then, its 200 OK never acknowledged, ends the call
//! itself after 64·T1 (RFC 3261 §13.3.1.4).
//!
//! What it must not do: keep any state, or touch dialogs this process holds (those end
//! through their own task).

use serde::{Deserialize, Serialize};

use rsipstack::dialog::dialog::DialogSnapshot;
use rsipstack::sip::{Header, Method, Request};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::Transaction;

use super::{SipError, UserAgent};
use crate::config::HostPort;

/// What a BYE for an answered call needs, kept in the store while the call lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogFacts {
    pub call_id: String,
    /// Our From header value, with our tag.
    pub from: String,
    /// Their To header value, with their tag.
    pub to: String,
    /// The remote target (the far end's Contact URI).
    pub target: String,
    /// Route header values, in the order requests carry them.
    #[serde(default)]
    pub route_set: Vec<String>,
    /// The last CSeq number we used in the dialog.
    pub cseq: u32,
    /// The profile's trunk the call was answered on (its outbound proxy carries the BYE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
}

impl DialogFacts {
    /// The facts of a confirmed dialog we placed.
    pub fn of(snapshot: &DialogSnapshot) -> DialogFacts {
        DialogFacts {
            call_id: snapshot.id.call_id.clone(),
            from: snapshot.from.to_string(),
            to: snapshot.to.to_string(),
            target: snapshot.remote_uri.to_string(),
            route_set: snapshot
                .route_set
                .iter()
                .map(|r| r.value().to_string())
                .collect(),
            cseq: snapshot.local_cseq,
            trunk: None,
        }
    }
}

/// Sends a BYE for the dialog `facts` describe (through `outbound_proxy` when the trunk has
/// one) and waits for its final response; returns its code. A transaction that gets no
/// answer ends after Timer F (32 s) with an error.
pub async fn bye(
    ua: &UserAgent,
    facts: &DialogFacts,
    outbound_proxy: Option<&HostPort>,
) -> Result<u16, SipError> {
    let stack = |e: rsipstack::Error| SipError::Stack(e.to_string());
    let uri =
        rsipstack::sip::Uri::try_from(facts.target.as_str()).map_err(|e| SipError::BadUri {
            uri: facts.target.clone(),
            reason: e.to_string(),
        })?;
    let endpoint = ua.endpoint();
    let via = endpoint.get_via(None, None).map_err(stack)?;
    let mut headers: Vec<Header> = vec![
        Header::Via(via.into()),
        Header::CallId(facts.call_id.clone().into()),
        Header::From(facts.from.clone().into()),
        Header::To(facts.to.clone().into()),
        Header::CSeq(
            rsipstack::sip::typed::CSeq {
                seq: facts.cseq.saturating_add(1),
                method: Method::Bye,
            }
            .into(),
        ),
        Header::MaxForwards(70.into()),
    ];
    headers.extend(
        facts
            .route_set
            .iter()
            .map(|r| Header::Route(r.clone().into())),
    );
    headers.push(Header::ContentLength(0u32.into()));
    let req = Request {
        method: Method::Bye,
        uri,
        headers: headers.into(),
        body: Vec::new(),
        version: rsipstack::sip::Version::V2,
    };
    let key = TransactionKey::from_request(&req, TransactionRole::Client).map_err(stack)?;
    let mut tx = Transaction::new_client(key, req, endpoint.clone(), None);
    if let Some(proxy) = outbound_proxy {
        // The proxy's first target (RFC 3263, through the process's resolver).
        let target = ua
            .resolve_host_port(proxy, None)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| SipError::Resolve {
                host: proxy.to_string(),
                reason: "no address".into(),
            })?;
        tx.destination = Some(super::ua::sip_addr(&target));
    }
    tx.send().await.map_err(stack)?;
    while let Some(msg) = tx.receive().await {
        if let rsipstack::sip::SipMessage::Response(resp) = msg {
            let code = u16::from(resp.status_code.clone());
            if code >= 200 {
                return Ok(code);
            }
        }
    }
    Err(SipError::Stack("BYE: no final response".into()))
}
