//! The fork plan: every process the server will run, computed before the
//! first fork so it can be checked, printed and tested without forking.
//!
//! Order follows SER's `main_loop`: the UDP receivers of each socket, then the
//! timer, the ctl handler, tcp main and its workers.

use std::fmt;

/// A process's rank as SER passes it to `child_init` (`pt.h`: `PROC_MAIN` 0,
/// `PROC_TIMER` -1, `PROC_RPC` -2, `PROC_TCP_MAIN` -4, SIP workers 1..).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// The supervising main process.
    Main,
    /// The timer process.
    Timer,
    /// The ctl/RPC handler.
    Ctl,
    /// tcp main (owns listening sockets and connections).
    TcpMain,
    /// A SIP worker (UDP receiver or TCP worker), numbered from 1.
    Sip(u32),
}

impl Rank {
    /// SER's integer value of this rank.
    pub fn as_i32(self) -> i32 {
        match self {
            Rank::Main => 0,
            Rank::Timer => -1,
            Rank::Ctl => -2,
            Rank::TcpMain => -4,
            // Ranks are small (children * sockets); saturate rather than wrap.
            Rank::Sip(n) => i32::try_from(n).unwrap_or(i32::MAX),
        }
    }

    /// True for processes that handle SIP messages.
    pub fn is_sip_worker(self) -> bool {
        matches!(self, Rank::Sip(_))
    }
}

/// What a planned process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcKind {
    /// The main process (entry 0 of every plan).
    Main,
    /// Receives on UDP socket `sock` (index into the socket list).
    UdpReceiver {
        /// Index of the socket in the bound socket list.
        sock: usize,
        /// Child number for this socket, from 0.
        child: usize,
    },
    /// Receives on SCTP socket `sock` (index among the SCTP sockets).
    SctpReceiver {
        /// Index of the socket among the bound SCTP sockets.
        sock: usize,
        /// Child number for this socket, from 0.
        child: usize,
    },
    /// The timer process.
    Timer,
    /// The ctl/RPC process.
    Ctl,
    /// tcp main.
    TcpMain,
    /// A TCP worker.
    TcpReceiver {
        /// Worker number, from 0.
        child: usize,
    },
}

/// One planned process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSpec {
    /// What it does.
    pub kind: ProcKind,
    /// Its rank for per-child init.
    pub rank: Rank,
    /// Its description as shown by `core.ps`.
    pub desc: String,
}

/// Inputs of the plan: the bound sockets and the process counts.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    /// Names (`127.0.0.1:5060`) of the UDP sockets, in bind order.
    pub udp_sockets: Vec<String>,
    /// Names of the SCTP sockets, in bind order.
    pub sctp_sockets: Vec<String>,
    /// SCTP receivers per socket (`-Q`, `sctp_children`).
    pub sctp_children: usize,
    /// True when at least one TCP socket is bound and TCP is enabled.
    pub tcp: bool,
    /// UDP receivers per socket (`-n`, `children=`).
    pub children: usize,
    /// TCP workers (`-N`, `tcp_children=`).
    pub tcp_children: usize,
    /// `-D` once: the main process itself receives on the first UDP socket.
    pub dont_fork: bool,
    /// A ctl process is wanted (a ctl transport is configured).
    pub ctl: bool,
}

/// The whole plan; entry 0 is the main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnPlan {
    /// Every process, main first.
    pub procs: Vec<ProcSpec>,
}

impl SpawnPlan {
    /// Computes the plan. With `dont_fork` the main process is the only
    /// receiver of the first UDP socket and only the timer (and ctl) are
    /// forked, as SER's `-D`.
    pub fn new(input: &PlanInput) -> SpawnPlan {
        let mut procs = Vec::new();
        let mut next_sip = 1u32;
        let mut sip_rank = || {
            let r = Rank::Sip(next_sip);
            next_sip += 1;
            r
        };
        let main_desc = match (input.dont_fork, input.udp_sockets.first()) {
            (true, Some(sock)) => format!("main process - udp receiver sock={sock}"),
            _ => "main process - attendant".to_string(),
        };
        procs.push(ProcSpec {
            kind: ProcKind::Main,
            rank: Rank::Main,
            desc: main_desc,
        });
        if !input.dont_fork {
            for (sock, name) in input.udp_sockets.iter().enumerate() {
                for child in 0..input.children {
                    procs.push(ProcSpec {
                        kind: ProcKind::UdpReceiver { sock, child },
                        rank: sip_rank(),
                        desc: format!("udp receiver child={child} sock={name}"),
                    });
                }
            }
            // SER forks the SCTP receivers right after the UDP ones
            for (sock, name) in input.sctp_sockets.iter().enumerate() {
                for child in 0..input.sctp_children {
                    procs.push(ProcSpec {
                        kind: ProcKind::SctpReceiver { sock, child },
                        rank: sip_rank(),
                        desc: format!("sctp receiver child={child} sock={name}"),
                    });
                }
            }
        }
        procs.push(ProcSpec {
            kind: ProcKind::Timer,
            rank: Rank::Timer,
            desc: "timer".into(),
        });
        if input.ctl {
            procs.push(ProcSpec {
                kind: ProcKind::Ctl,
                rank: Rank::Ctl,
                desc: "ctl handler".into(),
            });
        }
        if input.tcp && !input.dont_fork {
            procs.push(ProcSpec {
                kind: ProcKind::TcpMain,
                rank: Rank::TcpMain,
                desc: "tcp main process".into(),
            });
            for child in 0..input.tcp_children {
                procs.push(ProcSpec {
                    kind: ProcKind::TcpReceiver { child },
                    rank: sip_rank(),
                    desc: format!("tcp receiver (generic) child={child}"),
                });
            }
        }
        SpawnPlan { procs }
    }

    /// Number of processes including main.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Always false: a plan holds at least the main process.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Indices of the TCP workers, in order.
    pub fn tcp_workers(&self) -> impl Iterator<Item = usize> + '_ {
        self.procs
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, ProcKind::TcpReceiver { .. }))
            .map(|(i, _)| i)
    }
}

impl fmt::Display for SpawnPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.procs.iter().enumerate() {
            writeln!(f, "{i:3} rank={:<4} {}", p.rank.as_i32(), p.desc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PlanInput {
        PlanInput {
            udp_sockets: vec!["127.0.0.1:5060".into(), "127.0.0.1:5070".into()],
            tcp: true,
            children: 2,
            tcp_children: 3,
            dont_fork: false,
            ctl: true,
            ..PlanInput::default()
        }
    }

    #[test]
    fn sctp_receivers_follow_the_udp_ones() {
        let plan = SpawnPlan::new(&PlanInput {
            udp_sockets: vec!["127.0.0.1:5060".into()],
            sctp_sockets: vec!["127.0.0.1:5060".into()],
            sctp_children: 2,
            children: 1,
            ..PlanInput::default()
        });
        let descs: Vec<&str> = plan.procs.iter().map(|p| p.desc.as_str()).collect();
        assert_eq!(
            descs,
            [
                "main process - attendant",
                "udp receiver child=0 sock=127.0.0.1:5060",
                "sctp receiver child=0 sock=127.0.0.1:5060",
                "sctp receiver child=1 sock=127.0.0.1:5060",
                "timer",
            ]
        );
        assert_eq!(
            plan.procs[3].kind,
            ProcKind::SctpReceiver { sock: 0, child: 1 }
        );
        assert_eq!(plan.procs[3].rank, Rank::Sip(3));
    }

    #[test]
    fn plan_orders_receivers_timer_ctl_tcp() {
        let plan = SpawnPlan::new(&input());
        let descs: Vec<&str> = plan.procs.iter().map(|p| p.desc.as_str()).collect();
        assert_eq!(
            descs,
            [
                "main process - attendant",
                "udp receiver child=0 sock=127.0.0.1:5060",
                "udp receiver child=1 sock=127.0.0.1:5060",
                "udp receiver child=0 sock=127.0.0.1:5070",
                "udp receiver child=1 sock=127.0.0.1:5070",
                "timer",
                "ctl handler",
                "tcp main process",
                "tcp receiver (generic) child=0",
                "tcp receiver (generic) child=1",
                "tcp receiver (generic) child=2",
            ]
        );
        let ranks: Vec<i32> = plan.procs.iter().map(|p| p.rank.as_i32()).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4, -1, -2, -4, 5, 6, 7]);
        assert_eq!(plan.tcp_workers().collect::<Vec<_>>(), [8, 9, 10]);
    }

    #[test]
    fn dont_fork_keeps_only_timer() {
        let plan = SpawnPlan::new(&PlanInput {
            dont_fork: true,
            ctl: false,
            ..input()
        });
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan.procs[0].desc,
            "main process - udp receiver sock=127.0.0.1:5060"
        );
        assert_eq!(plan.procs[1].kind, ProcKind::Timer);
    }

    #[test]
    fn no_tcp_no_tcp_processes() {
        let plan = SpawnPlan::new(&PlanInput {
            tcp: false,
            ctl: false,
            ..input()
        });
        assert_eq!(plan.len(), 1 + 4 + 1);
    }
}
