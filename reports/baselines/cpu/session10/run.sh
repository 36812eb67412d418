#!/usr/bin/env bash
cd /work/main
D=build/cli/dplr
{ date; uptime; } > /tmp/i15/env.txt
/usr/bin/time -v $D bench --reference --threads 0 --precision double dd td --estimate repeat extrapolated --prove 100 > /tmp/i15/bench-t0.txt 2> /tmp/i15/bench-t0.time
/usr/bin/time -v $D bench --reference --threads 1 --precision double dd td --estimate repeat extrapolated > /tmp/i15/bench-t1.txt 2> /tmp/i15/bench-t1.time
uptime >> /tmp/i15/env.txt
/usr/bin/time -v bash scripts/training-scale-recording.sh $D /tmp/i15/rec > /tmp/i15/rec.txt 2> /tmp/i15/rec.time
uptime >> /tmp/i15/env.txt
/usr/bin/time -v $D verify /tmp/i15/rec/recording.safetensors --precision dd --estimate extrapolated --threads 0 > /tmp/i15/verify-dd.txt 2> /tmp/i15/verify-dd.time
uptime >> /tmp/i15/env.txt; date >> /tmp/i15/env.txt
echo done > /tmp/i15/DONE
