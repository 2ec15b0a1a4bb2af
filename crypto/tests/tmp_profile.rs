use std::time::Instant;
use crypto::secagg::prg::{apply_masks, apply_masks_le, MaskStream, MaskSign};
use crypto::secagg::{MaskSeed, MaskedInput};
#[test]
fn profile() {
    let d = 1_000_000usize;
    let input: Vec<u32> = (0..d as u32).collect();
    let streams: Vec<MaskStream> = (0..4u8).map(|i| MaskStream { key: MaskSeed::from_bytes([i; 32]), sign: MaskSign::Add }).collect();
    let mut w = input.clone();
    let mut p = MaskedInput::encode(&w);
    for _ in 0..3 {
        let t = Instant::now(); apply_masks(&mut w, &streams[..1]); let a = t.elapsed();
        let t = Instant::now(); apply_masks(&mut w, &streams); let b = t.elapsed();
        let t = Instant::now(); apply_masks_le(&mut p[4..], &streams); let c = t.elapsed();
        let t = Instant::now(); let q = MaskedInput::encode(&w); let e = t.elapsed();
        let t = Instant::now(); std::hint::black_box(blake3::hash(&q)); let f = t.elapsed();
        let mut h = blake3::Hasher::new();
        let t = Instant::now(); h.update_rayon(&q); std::hint::black_box(h.finalize()); let g = t.elapsed();
        println!("1 stream {a:?} | 4 streams {b:?} | 4 le {c:?} | encode(fresh) {e:?} | blake3 {f:?} | blake3 rayon {g:?}");
    }
}
