"""The demos' seed options: `--seeds N` and `--first-seed S` train every network with seeds S to
S+N-1, each run's SEED given on its command line (so SEED among the overrides would contradict
them and is refused)."""


def add_seed_options(parser):
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every network with this many seeds (SEED), from --first-seed")
    parser.add_argument("--first-seed", type=int, default=0)


def seeds_of(parser, args):
    """The seeds to train, in order; stops through `parser.error` on a bad combination."""
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.first_seed < 0:
        parser.error(f"--first-seed must not be negative, got {args.first_seed}")
    if "SEED" in args.opts[::2]:
        parser.error("give the seeds with --seeds/--first-seed, not SEED among the overrides")
    return list(range(args.first_seed, args.first_seed + args.seeds))
