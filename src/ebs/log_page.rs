//! The EBS NVMe log page (vendor log 0xD0, 4096 bytes): the per-volume performance counters an
//! EBS volume on a Nitro instance reports about itself, as AWS documents them under "detailed
//! performance statistics". Little-endian; times in microseconds.

/// The log page's identifier in the NVMe Get Log Page command.
pub const LOG_PAGE_ID: u8 = 0xD0;
/// The log page's length in bytes.
pub const LOG_PAGE_LEN: usize = 4096;
/// The first eight bytes of every EBS log page.
const MAGIC: u64 = 0x3C23_B510;
/// Twelve counters, then reserved bytes, then the read and write latency histograms.
const HISTOGRAMS_AT: usize = 96 + 416;
const MAX_BINS: usize = 64;
/// A histogram: its bin count, then 64 bins of (lower, upper, count).
const HISTOGRAM_LEN: usize = 8 + MAX_BINS * 24;

/// One latency bin: operations that took from `lower_us` up to `upper_us` microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyBin {
    pub lower_us: u64,
    pub upper_us: u64,
    pub count: u64,
}

/// What one EBS volume's log page says, as counted since it was attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EbsLogPage {
    pub read_ops: u64,
    pub write_ops: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_time_us: u64,
    pub write_time_us: u64,
    /// Time the volume's IOPS demand exceeded its provisioned IOPS.
    pub ebs_iops_exceeded_us: u64,
    /// Time the volume's throughput demand exceeded its provisioned throughput.
    pub ebs_throughput_exceeded_us: u64,
    /// Time the volume's IOPS exceeded what the instance allows.
    pub ec2_iops_exceeded_us: u64,
    /// Time the volume's throughput exceeded what the instance allows.
    pub ec2_throughput_exceeded_us: u64,
    pub queue_length: u64,
    pub read_latency: Vec<LatencyBin>,
    pub write_latency: Vec<LatencyBin>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogPageError {
    #[error("the log page is {0} bytes, not {LOG_PAGE_LEN}")]
    Length(usize),
    #[error("the log page's magic is {0:#x}, not EBS's {MAGIC:#x}: not an EBS volume")]
    Magic(u64),
}

fn u64_at(page: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&page[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// A histogram's bins; a bin count above 64 reads as 64, since there are only 64 slots.
fn histogram(page: &[u8], at: usize) -> Vec<LatencyBin> {
    let bins = usize::try_from(u64_at(page, at)).unwrap_or(MAX_BINS).min(MAX_BINS);
    (0..bins)
        .map(|i| {
            let bin = at + 8 + i * 24;
            LatencyBin {
                lower_us: u64_at(page, bin),
                upper_us: u64_at(page, bin + 8),
                count: u64_at(page, bin + 16),
            }
        })
        .collect()
}

impl EbsLogPage {
    pub fn parse(page: &[u8]) -> Result<EbsLogPage, LogPageError> {
        if page.len() != LOG_PAGE_LEN {
            return Err(LogPageError::Length(page.len()));
        }
        let field = |i: usize| u64_at(page, i * 8);
        if field(0) != MAGIC {
            return Err(LogPageError::Magic(field(0)));
        }
        Ok(EbsLogPage {
            read_ops: field(1),
            write_ops: field(2),
            read_bytes: field(3),
            write_bytes: field(4),
            read_time_us: field(5),
            write_time_us: field(6),
            ebs_iops_exceeded_us: field(7),
            ebs_throughput_exceeded_us: field(8),
            ec2_iops_exceeded_us: field(9),
            ec2_throughput_exceeded_us: field(10),
            queue_length: field(11),
            read_latency: histogram(page, HISTOGRAMS_AT),
            write_latency: histogram(page, HISTOGRAMS_AT + HISTOGRAM_LEN),
        })
    }

    /// The page as a volume would report it: the inverse of [`parse`](Self::parse), for stand-ins.
    pub fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; LOG_PAGE_LEN];
        let mut put = |at: usize, v: u64| page[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let fields = [
            MAGIC,
            self.read_ops,
            self.write_ops,
            self.read_bytes,
            self.write_bytes,
            self.read_time_us,
            self.write_time_us,
            self.ebs_iops_exceeded_us,
            self.ebs_throughput_exceeded_us,
            self.ec2_iops_exceeded_us,
            self.ec2_throughput_exceeded_us,
            self.queue_length,
        ];
        for (i, v) in fields.into_iter().enumerate() {
            put(i * 8, v);
        }
        for (at, bins) in [
            (HISTOGRAMS_AT, &self.read_latency),
            (HISTOGRAMS_AT + HISTOGRAM_LEN, &self.write_latency),
        ] {
            let bins = &bins[..bins.len().min(MAX_BINS)];
            put(at, bins.len() as u64);
            for (i, b) in bins.iter().enumerate() {
                let bin = at + 8 + i * 24;
                put(bin, b.lower_us);
                put(bin + 8, b.upper_us);
                put(bin + 16, b.count);
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EbsLogPage {
        EbsLogPage {
            read_ops: 7,
            write_ops: 11,
            read_bytes: 7 * 4096,
            write_bytes: 11 * 16384,
            read_time_us: 2_500,
            write_time_us: 9_000,
            ebs_iops_exceeded_us: 1_500_000,
            ebs_throughput_exceeded_us: 250_000,
            ec2_iops_exceeded_us: 3,
            ec2_throughput_exceeded_us: 4,
            queue_length: 2,
            read_latency: vec![
                LatencyBin {
                    lower_us: 0,
                    upper_us: 128,
                    count: 5,
                },
                LatencyBin {
                    lower_us: 128,
                    upper_us: 256,
                    count: 2,
                },
            ],
            write_latency: vec![LatencyBin {
                lower_us: 256,
                upper_us: 512,
                count: 11,
            }],
        }
    }

    #[test]
    fn a_page_reads_back_field_by_field() {
        let page = sample().encode();
        assert_eq!(page.len(), LOG_PAGE_LEN);
        // Offsets as documented: magic first, the queue length at byte 88, histograms at 512.
        assert_eq!(&page[..8], &0x3C23_B510u64.to_le_bytes());
        assert_eq!(u64_at(&page, 88), 2);
        assert_eq!(u64_at(&page, 512), 2);
        assert_eq!(u64_at(&page, 512 + 8 + 24 + 16), 2, "second read bin's count");
        assert_eq!(u64_at(&page, 512 + 1544), 1, "write histogram's bin count");
        assert_eq!(EbsLogPage::parse(&page), Ok(sample()));
    }

    #[test]
    fn other_pages_are_refused() {
        let mut page = sample().encode();
        page[0] = 0;
        assert!(matches!(EbsLogPage::parse(&page), Err(LogPageError::Magic(_))));
        assert_eq!(EbsLogPage::parse(&page[..512]), Err(LogPageError::Length(512)));
    }

    #[test]
    fn a_bin_count_past_the_slots_reads_as_all_slots() {
        let mut page = sample().encode();
        page[512..520].copy_from_slice(&u64::MAX.to_le_bytes());
        let parsed = EbsLogPage::parse(&page).unwrap();
        assert_eq!(parsed.read_latency.len(), 64);
    }
}
