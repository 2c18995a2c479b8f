//! One parameter value at a time: booleans, numbers, sizes and type names, with messages that
//! name the parameter.

use crate::ebs::{FsType, MAX_VOLUME_INITIALIZATION_RATE, MIN_VOLUME_INITIALIZATION_RATE, VolumeType};
use crate::error::{Error, Result, shown};

/// Go's `strconv.ParseBool` spellings.
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Error::InvalidArgument(format!(
            "parameter {}: value {} is not a boolean (use \"true\" or \"false\")",
            shown(key),
            shown(value)
        ))),
    }
}

/// A decimal whole number (an optional `+` like Go's ParseInt; no spaces).
pub fn parse_whole(key: &str, value: &str) -> Result<u64> {
    value.parse::<u64>().map_err(|_| {
        let digits = value.strip_prefix('-').unwrap_or(value);
        let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let why = if numeric && value.starts_with('-') {
            "is negative".to_owned()
        } else if numeric {
            format!("is too large (at most {})", u64::MAX)
        } else {
            "is not a whole number".to_owned()
        };
        Error::InvalidArgument(format!("parameter {}: value {} {why}", shown(key), shown(value)))
    })
}

pub fn parse_u32(key: &str, value: &str) -> Result<u32> {
    let n = parse_whole(key, value)?;
    u32::try_from(n).map_err(|_| {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is too large (at most {})",
            shown(key),
            shown(value),
            u32::MAX
        ))
    })
}

/// 0 means unset, as in Go (which tests `!= 0`).
pub fn nonzero(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// `""` keeps the default, as in Go.
pub fn parse_type(key: &str, value: &str) -> Result<Option<VolumeType>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e: Error| Error::InvalidArgument(format!("parameter {}: {e}", shown(key))))
}

pub fn parse_fs_type(key: &str, value: &str) -> Result<Option<FsType>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e: Error| Error::InvalidArgument(format!("parameter {}: {e}", shown(key))))
}

/// A byte size for mkfs: decimal, optionally with a binary `k`/`m`/`g` suffix as mke2fs and
/// mkfs.xfs accept (the Go driver passes the text through).
pub fn parse_size(key: &str, value: &str) -> Result<u32> {
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let bad = || {
        Error::InvalidArgument(format!(
            "parameter {}: value {} is not a size in bytes (a whole number, optionally with k, m or g)",
            shown(key),
            shown(value)
        ))
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = digits.parse::<u64>().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "parameter {}: value {} is too large (at most {} bytes)",
                shown(key),
                shown(value),
                u32::MAX
            ))
        })
}

pub fn parse_inode_count(key: &str, value: &str) -> Result<u64> {
    parse_whole(key, value)
}

pub fn parse_initialization_rate(key: &str, value: &str) -> Result<Option<u32>> {
    let Some(rate) = nonzero(parse_u32(key, value)?) else {
        return Ok(None);
    };
    if !(MIN_VOLUME_INITIALIZATION_RATE..=MAX_VOLUME_INITIALIZATION_RATE).contains(&rate) {
        return Err(Error::InvalidArgument(format!(
            "parameter {}: value {} is outside {MIN_VOLUME_INITIALIZATION_RATE}–{MAX_VOLUME_INITIALIZATION_RATE} MiB/s",
            shown(key),
            shown(value)
        )));
    }
    Ok(Some(rate))
}
