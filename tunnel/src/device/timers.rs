//! The timer thread: every `TICK_INTERVAL`, run session timers and keepalives. It sleeps
//! on the device's exit, so stopping a device does not wait out a tick.

use std::sync::Arc;
use std::time::Instant;

use super::tx::send_batch;
use super::Device;
use crate::io::Batch;
use crate::proto::TICK_INTERVAL;

pub(super) fn run(device: Arc<Device>) {
    let mut to_net = Batch::new(256, 256 * 1024);
    while device.wait(Some(TICK_INTERVAL)).is_none() {
        to_net.clear();
        let socket = device.socket();
        device.core.read().tick(Instant::now(), &mut to_net);
        send_batch(&*socket, &to_net);
    }
}
