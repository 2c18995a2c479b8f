//! Attaching and detaching: device names per instance, read once from the instance and then
//! kept by our own attaches and detaches.

use super::*;

/// Device names the driver hands out: /dev/xvdaa … /dev/xvdzz, as the Go driver does.
pub(super) fn device_names() -> impl Iterator<Item = String> {
    (b'a'..=b'z').flat_map(|a| (b'a'..=b'z').map(move |b| format!("/dev/xvd{}{}", a as char, b as char)))
}

/// `/dev/sdf` and `/dev/xvdf` name the same slot.
pub(super) fn slot(name: &str) -> String {
    let n = name.trim_start_matches("/dev/");
    n.strip_prefix("sd")
        .map(|r| format!("xvd{r}"))
        .unwrap_or_else(|| n.to_owned())
}

impl AwsCloud {
    /// The device slots in use on an instance (read from EC2 the first time).
    pub(super) async fn slots_of(&self, node: &str) -> Result<HashSet<String>> {
        if let Some(s) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            return Ok(s.clone());
        }
        // Single flight: the first attaches to a new node (a StatefulSet landing there) wait for
        // one read instead of each describing the instance; the batcher alone would merge only
        // those that happen to fall in one window. A failed read is tried again by the next.
        let read = self
            .first_reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_owned())
            .or_default()
            .clone();
        read.get_or_try_init(|| async {
            let inst = self.instance(node).await?;
            let used: HashSet<String> = inst
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.device_name())
                .map(slot)
                .collect();
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(node.to_owned())
                .or_insert(used);
            Ok::<_, Error>(())
        })
        .await?;
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slots.get(node).cloned().unwrap_or_default())
    }

    pub(super) fn take_slot(&self, node: &str, used: &HashSet<String>) -> Result<String> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mine = slots.entry(node.to_owned()).or_default();
        let name = device_names()
            .find(|n| !used.contains(&slot(n)) && !mine.contains(&slot(n)))
            .ok_or_else(|| Error::ResourceExhausted(format!("node {node} has no free device name left")))?;
        mine.insert(slot(&name));
        Ok(name)
    }

    pub(super) fn free_slot(&self, node: &str, device: &str) {
        if let Some(s) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(node) {
            s.remove(&slot(device));
        }
    }

    pub(super) async fn instance(&self, id: &str) -> Result<ec2::Instance> {
        if !is_ec2_id("i", id) {
            return Err(Error::NotFound(format!("node {id} is not an EC2 instance id")));
        }
        self.instances
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("instance {id} does not exist")))
    }
}

impl AwsCloud {
    pub(super) async fn attach_volume(&self, id: &str, node: &str) -> Result<Attachment> {
        let v = self.describe(id).await?;
        let attachments = to_volume(&v).attachments;
        if let Some(a) = attachments.iter().find(|a| a.node == node) {
            let device = a.device.clone();
            let attached = v
                .attachments()
                .iter()
                .any(|x| x.instance_id() == Some(node) && x.state() == Some(&ec2::VolumeAttachmentState::Attached));
            if !attached {
                self.wait_attached(id, node).await?;
            }
            return Ok(Attachment {
                node: node.to_owned(),
                device,
                read_only: false,
            });
        }
        // The node first: an unknown instance is NOT_FOUND whatever the volume's state.
        let used = self.slots_of(node).await?;
        if let Some(other) = attachments.first()
            && !v.multi_attach_enabled().unwrap_or(false)
        {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is attached to {} and is not a multi-attach volume; unpublish it there first",
                other.node
            )));
        }
        for _ in 0..3 {
            let device = self.take_slot(node, &used)?;
            let out = self
                .retrier
                .send("AttachVolume", false, || {
                    self.ec2
                        .attach_volume()
                        .volume_id(id)
                        .instance_id(node)
                        .device(&device)
                        .send()
                })
                .await;
            match out {
                Ok(a) => {
                    if a.state() != Some(&ec2::VolumeAttachmentState::Attached) {
                        self.wait_attached(id, node).await?;
                    }
                    info!(volume = %id, node, device, "volume attached");
                    return Ok(Attachment {
                        node: node.to_owned(),
                        device,
                        read_only: false,
                    });
                }
                Err(e) => {
                    let message = match &e {
                        aws_sdk_ec2::error::SdkError::ServiceError(s) => {
                            use aws_sdk_ec2::error::ProvideErrorMetadata;
                            s.err().message().unwrap_or_default().to_owned()
                        }
                        _ => String::new(),
                    };
                    let err = errors::map(&format!("attaching volume {id} to {node} as {device}"), e);
                    // Another attach took the name meanwhile: keep it marked used, try the next.
                    if matches!(err, Error::InvalidArgument(_)) && message.contains("already in use") {
                        continue;
                    }
                    self.free_slot(node, &device);
                    return Err(err);
                }
            }
        }
        Err(Error::Unavailable(format!(
            "no free device name could be used on {node} for volume {id}; retry"
        )))
    }

    pub(super) async fn detach_volume(&self, id: &str, node: &str) -> Result<()> {
        if !is_ec2_id("vol", id) {
            return Err(not_found("volume", id));
        }
        let out = self
            .retrier
            .send("DetachVolume", false, || {
                self.ec2.detach_volume().volume_id(id).instance_id(node).send()
            })
            .await;
        let device = match out {
            Ok(a) => {
                let device = a.device().unwrap_or_default().to_owned();
                if a.state() != Some(&ec2::VolumeAttachmentState::Detached) {
                    let started = std::time::Instant::now();
                    let seen = std::sync::Mutex::new(a.state().map_or("detaching", |s| s.as_str()).to_owned());
                    let waited = self
                        .wait_volume(id, "detached", |v| {
                            let mine = v.attachments().iter().find(|x| {
                                x.instance_id() == Some(node)
                                    && x.state() != Some(&ec2::VolumeAttachmentState::Detached)
                            });
                            if let (Some(x), Ok(mut seen)) = (mine, seen.lock()) {
                                *seen = x.state().map_or("unknown", |s| s.as_str()).to_owned();
                            }
                            mine.is_none().then_some(Ok(()))
                        })
                        .await;
                    let state = seen.lock().map(|s| s.clone()).unwrap_or_default();
                    self.retrier
                        .metrics()
                        .detach_waited(id, node, &state, started.elapsed());
                    waited?;
                }
                device
            }
            Err(e) => {
                let code = errors::code_of(&e).map(str::to_owned);
                match code.as_deref() {
                    // Not attached there (any more): done.
                    Some("IncorrectState" | "InvalidAttachment.NotFound") => return Ok(()),
                    _ => return Err(errors::map(&format!("detaching volume {id} from {node}"), e)),
                }
            }
        };
        self.free_slot(node, &device);
        info!(volume = %id, node, "volume detached");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_skip_used_slots_in_either_spelling() {
        assert_eq!(slot("/dev/sdf"), "xvdf");
        assert_eq!(slot("/dev/xvdba"), "xvdba");
        let names: Vec<String> = device_names().collect();
        assert_eq!(names.len(), 26 * 26);
        assert_eq!(names[0], "/dev/xvdaa");
        assert_eq!(names[27], "/dev/xvdbb");
    }
}
