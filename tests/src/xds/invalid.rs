//! The configs [`super::XdsServer::push_invalid`] pushes: schema-valid, so they encode, but
//! rejected by Envoy's own validation (the error texts below are Envoy 1.40's).

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use super::codec::{self, Encoded};
use super::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

/// A variant of `resources` that Envoy rejects, with the same names plus at most one more.
/// Envoy 1.40 answers (`error_detail.message`):
/// * CDS, a STATIC cluster with `lb_policy: CLUSTER_PROVIDED`: `Error adding/updating
///   cluster(s) meshsim-invalid: cluster manager: cluster provided LB specified but cluster
///   'meshsim-invalid' did not provide one. Check cluster documentation.`
/// * LDS, a listener on a host name: `Error adding/updating listener(s) meshsim-invalid:
///   malformed IP address: meshsim.invalid`
/// * RDS, the first route configuration with a domain in two virtual hosts: `Only unique values
///   for domains are permitted. Duplicate entry of domain meshsim.invalid in route 8080`
/// * EDS, the first assignment with an endpoint on a host name: `malformed IP address:
///   meshsim.invalid. Consider setting resolver_name or setting cluster type to 'STRICT_DNS' or
///   'LOGICAL_DNS'`
pub fn make_invalid(type_url: &str, mut resources: Vec<Encoded>) -> Result<Vec<Encoded>> {
    let bad_addr = json!({"socket_address": {"address": "meshsim.invalid", "port_value": 1}});
    match type_url {
        CLUSTER => resources.push(codec::encode(
            type_url,
            &json!({
                "@type": CLUSTER,
                "name": "meshsim-invalid",
                "type": "STATIC",
                "lb_policy": "CLUSTER_PROVIDED",
                "connect_timeout": "1s",
            }),
        )?),
        LISTENER => resources.push(codec::encode(
            type_url,
            &json!({
                "@type": LISTENER,
                "name": "meshsim-invalid",
                "address": bad_addr,
                "filter_chains": [{"filters": []}],
            }),
        )?),
        ROUTE | ENDPOINT => {
            let first = resources
                .first_mut()
                .ok_or_else(|| anyhow!("nothing of that type is subscribed"))?;
            let mut v = first.json.clone();
            if type_url == ROUTE {
                let vh = |n: &str| json!({"name": n, "domains": ["meshsim.invalid"], "routes": []});
                let list = v.get_mut("virtual_hosts").and_then(Value::as_array_mut);
                match list {
                    Some(l) => l.extend([vh("meshsim-invalid-1"), vh("meshsim-invalid-2")]),
                    None => {
                        v["virtual_hosts"] =
                            json!([vh("meshsim-invalid-1"), vh("meshsim-invalid-2")]);
                    }
                }
            } else {
                let bad = json!({"lb_endpoints": [{"endpoint": {"address": bad_addr}}]});
                match v.get_mut("endpoints").and_then(Value::as_array_mut) {
                    Some(l) => l.push(bad),
                    None => v["endpoints"] = json!([bad]),
                }
            }
            *first = codec::encode(type_url, &v)?;
        }
        other => bail!("no invalid variant for {other}"),
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_variants_encode() {
        let c = codec::encode(CLUSTER, &json!({"name": "c", "type": "STATIC"})).unwrap();
        assert_eq!(make_invalid(CLUSTER, vec![c]).unwrap().len(), 2);
        assert_eq!(
            make_invalid(LISTENER, vec![]).unwrap()[0].name,
            "meshsim-invalid"
        );
        let r = codec::encode(
            ROUTE,
            &json!({"name": "80", "virtual_hosts": [{"name": "a", "domains": ["*"]}]}),
        )
        .unwrap();
        let bad = make_invalid(ROUTE, vec![r]).unwrap();
        assert_eq!(bad[0].json["virtual_hosts"].as_array().unwrap().len(), 3);
        let e = codec::encode(ENDPOINT, &json!({"cluster_name": "x"})).unwrap();
        assert_eq!(
            make_invalid(ENDPOINT, vec![e]).unwrap()[0].json["endpoints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(make_invalid(ROUTE, vec![]).is_err());
    }
}
