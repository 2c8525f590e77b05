//! Measuring requests in the benchmarks: database commands and the time they cover (from the
//! driver's command monitor), the process's CPU time, percentiles, one printed line per route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;

/// Each command's start-to-reply interval, from the driver's command monitor.
#[derive(Clone, Default)]
pub struct Recorder {
    started: Arc<Mutex<HashMap<i32, (Instant, String)>>>,
    intervals: Arc<Mutex<Vec<(Instant, Instant)>>>,
    /// Every command's duration, by command name, for the whole run.
    pub by_name: Arc<Mutex<HashMap<String, Vec<Duration>>>>,
}

impl Recorder {
    pub fn handler(&self) -> EventHandler<CommandEvent> {
        let me = self.clone();
        EventHandler::callback(move |event| match event {
            CommandEvent::Started(e) => {
                me.started
                    .lock()
                    .unwrap()
                    .insert(e.request_id, (Instant::now(), e.command_name.clone()));
            }
            CommandEvent::Succeeded(e) => me.finish(e.request_id),
            CommandEvent::Failed(e) => me.finish(e.request_id),
            _ => {}
        })
    }

    fn finish(&self, request_id: i32) {
        if let Some((start, name)) = self.started.lock().unwrap().remove(&request_id) {
            let end = Instant::now();
            self.intervals.lock().unwrap().push((start, end));
            self.by_name
                .lock()
                .unwrap()
                .entry(name)
                .or_default()
                .push(end - start);
        }
    }

    /// (commands, time covered by at least one command) since the last call.
    pub fn take(&self) -> (usize, Duration) {
        let mut intervals = std::mem::take(&mut *self.intervals.lock().unwrap());
        intervals.sort();
        let mut covered = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (start, end) in intervals.iter().copied() {
            current = match current {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    covered += e - s;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = current {
            covered += e - s;
        }
        (intervals.len(), covered)
    }
}

pub struct Sample {
    pub wall: Duration,
    pub outside_db: Duration,
    pub cpu: Duration,
    pub commands: usize,
}

/// CPU time this thread has used. The benchmark runs on a current-thread runtime, so the
/// difference over a request is all the work done for it in this process (router, token
/// verification, the driver's encoding and decoding, folding, rules, JSON), without the time
/// spent waiting for the database or for a CPU the database server is using.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn report(route: &str, samples: &[Sample]) {
    let sorted = |f: fn(&Sample) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        v.sort();
        v
    };
    let (wall, outside, cpu) = (
        sorted(|s| s.wall),
        sorted(|s| s.outside_db),
        sorted(|s| s.cpu),
    );
    let commands: Vec<usize> = samples.iter().map(|s| s.commands).collect();
    let (min, max) = (
        commands.iter().min().unwrap(),
        commands.iter().max().unwrap(),
    );
    println!(
        "{route:<42} {:>4} {:>9.2} {:>9.2} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        samples.len(),
        ms(percentile(&wall, 0.5)),
        ms(percentile(&wall, 0.95)),
        if min == max {
            format!("{min}")
        } else {
            format!("{min}-{max}")
        },
        ms(percentile(&outside, 0.5)),
        ms(percentile(&outside, 0.95)),
        ms(percentile(&cpu, 0.5)),
        ms(percentile(&cpu, 0.95)),
    );
}
