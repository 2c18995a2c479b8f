//! The aws backend absorbing EC2's transient failures, against moto behind the tests' fault
//! proxy (support/aws.rs): throttling on a share of every call, throttling of everything for a
//! while, and an IAM refusal. moto itself never throttles; the proxy plays EC2's answers.
#![cfg(feature = "aws")]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use ebs_csi::csi::*;
use support::aws::*;
use support::*;
use tonic::Code;

/// The driver on the aws backend through `proxy`, as node `instance`, serving metrics.
async fn driver(proxy: &FaultProxy, instance: &str, metrics_port: u16) -> Driver {
    let env = Moto::env(&proxy.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let metrics = format!("127.0.0.1:{metrics_port}");
    Driver::start_custom(
        &[
            "--backend",
            "aws",
            "--node-id",
            instance,
            "--zone",
            AZ,
            "--instance-type",
            "m7i.large",
            "--http-endpoint",
            &metrics,
        ],
        &env,
    )
    .await
}

/// The driver's metric `name` summed over its labels.
fn metric(port: u16, name: &str) -> u64 {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn volumes_in_moto(moto: &Moto) -> usize {
    let out = moto.client().describe_volumes().send().await.unwrap();
    out.volumes()
        .iter()
        .filter(|v| v.tags().iter().any(|t| t.key() == Some("CSIVolumeName")))
        .count()
}

#[tokio::test]
async fn throttling_of_a_fifth_of_all_calls_reaches_no_caller() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instances = [moto.instance("m7i.large").await, moto.instance("m7i.large").await];
    let port = free_port();
    let d = driver(&proxy, &instances[0], port).await;
    proxy.throttle_percent(20);

    // 50 volumes through their whole controller life, 10 at a time.
    let mut failures = Vec::new();
    let mut ids = Vec::new();
    for wave in 0..5 {
        let mut calls = Vec::new();
        for n in 0..10 {
            let mut c = d.controller.clone();
            let node = instances[n % 2].clone();
            let name = format!("pvc-throttled-{wave}-{n}");
            calls.push(tokio::spawn(async move {
                let v = c
                    .create_volume(create_in_zone(&name, 1, &[]))
                    .await?
                    .into_inner()
                    .volume
                    .unwrap();
                c.controller_publish_volume(publish_req(&v.volume_id, &node)).await?;
                c.controller_unpublish_volume(unpublish_req(&v.volume_id, &node))
                    .await?;
                Ok::<_, tonic::Status>(v.volume_id)
            }));
        }
        for c in calls {
            match c.await.unwrap() {
                Ok(id) => ids.push(id),
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "errors reached the caller: {failures:?}");
    assert_eq!(ids.len(), 50);
    assert_eq!(volumes_in_moto(&moto).await, 50, "one volume per name, no duplicates");
    let mut deletes = Vec::new();
    for id in ids {
        let mut c = d.controller.clone();
        deletes.push(tokio::spawn(async move {
            c.delete_volume(DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await
        }));
    }
    for del in deletes {
        del.await.unwrap().expect("delete under throttling");
    }
    proxy.throttle_percent(0);
    assert_eq!(volumes_in_moto(&moto).await, 0);
    let (throttles, retries) = (
        metric(port, "aws_ebs_csi_api_request_throttles_total"),
        metric(port, "ebs_csi_cloud_api_retries_total"),
    );
    println!("throttles {throttles}, retries {retries}");
    assert!(throttles > 0, "the proxy throttled and the driver counted it");
    assert!(
        retries >= throttles,
        "every throttle was retried ({retries} retries, {throttles} throttles)"
    );
}

#[tokio::test]
async fn a_caller_deadline_bounds_the_retries_and_a_later_call_succeeds() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::new());
    let instance = moto.instance("m7i.large").await;
    let port = free_port();
    let mut d = driver(&proxy, &instance, port).await;

    proxy.throttle_percent(100);
    let before = proxy.count("CreateVolume");
    let mut req = tonic::Request::new(create_in_zone("pvc-deadline", 1, &[]));
    req.set_timeout(Duration::from_secs(5));
    let err = d.controller.create_volume(req).await.unwrap_err();
    // The driver's own answer, sent before the deadline: a late one would be the client's
    // DEADLINE_EXCEEDED without EC2's code.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("RequestLimitExceeded"), "{}", err.message());
    let tries = proxy.count("CreateVolume") - before;
    assert!(tries >= 2, "it retried ({tries} attempts)");
    // Jittered backoff from 100 ms, doubling to 5 s, and the rate limiter at its floor of two
    // calls a second: within 5 s that is far fewer than a tight loop would send.
    assert!(tries <= 20, "{tries} CreateVolume attempts in 5 s");
    assert!(metric(port, "aws_ebs_csi_api_request_throttles_total") >= tries as u64);

    proxy.throttle_percent(0);
    let mut req = tonic::Request::new(create_in_zone("pvc-deadline", 1, &[]));
    req.set_timeout(Duration::from_secs(30));
    let v = d
        .controller
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(v.volume_id.starts_with("vol-"));
    assert_eq!(volumes_in_moto(&moto).await, 1);
}

#[tokio::test]
async fn an_iam_refusal_names_the_action_and_the_policy_flag() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, HashMap::from([("AttachVolume", vec![Fault::Unauthorized])]));
    let instance = moto.instance("m7i.large").await;
    let mut d = driver(&proxy, &instance, free_port()).await;
    let v = d
        .controller
        .create_volume(create_in_zone("pvc-static", 1, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let err = d
        .controller
        .controller_publish_volume(publish_req(&v.volume_id, &instance))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    for part in [
        "ec2:AttachVolume",
        v.volume_id.as_str(),
        "ebs-csi iam policy --allow-static-volumes",
    ] {
        assert!(err.message().contains(part), "{part:?} missing from: {}", err.message());
    }
    // Once allowed (the plan had one refusal), the same publish goes through.
    d.controller
        .controller_publish_volume(publish_req(&v.volume_id, &instance))
        .await
        .unwrap();
}
