#[tokio::main]
async fn main() -> std::process::ExitCode {
    ebs_csi::cli::run().await
}
