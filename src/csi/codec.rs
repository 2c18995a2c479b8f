//! The codec of the generated CSI services: prost's, except for what a message that is not valid
//! protobuf becomes. tonic-prost answers INTERNAL for it (a truncated message, a string that is
//! not UTF-8, a field of the wrong wire type), the code this driver keeps for its own faults;
//! the bytes are the caller's, so the caller gets INVALID_ARGUMENT.

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

#[derive(Debug, Clone)]
pub struct CsiCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for CsiCodec<T, U> {
    fn default() -> Self {
        CsiCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for CsiCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CsiDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CsiDecoder(self.0.decoder())
    }
}

#[derive(Debug, Clone)]
pub struct CsiDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for CsiDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Decoding fails only on the bytes themselves.
        self.0
            .decode(buf)
            .map_err(|s| Status::invalid_argument(format!("malformed protobuf message: {}", s.message())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
