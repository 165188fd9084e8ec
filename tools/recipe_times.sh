#!/usr/bin/env bash
# Where the time of a make run goes: use this script as make's shell.
#
#   make -j3 test SHELL=tools/recipe_times.sh           # or: bash .ci/run test SHELL=tools/recipe_times.sh
#   tools/recipe_times.sh --report                       # the recipe lines by CPU time, and the totals
#
# Each recipe line runs in bash as it would without this script (make's .SHELLFLAGS come through), then one line
# is appended to $RECIPE_TIMES (default _build/recipe-times.tsv, relative to make's directory), tab-separated:
#   start (s since the epoch)  wall s  user CPU s  system CPU s  exit status  make level  command
# The CPU times are those of the line's processes and of every process they waited for (a pytest run, its
# kernels, a sub-make's recipes). A process that is not waited for (a browser's renderer that its driver kills)
# is not counted: compare the total with the machine's busy time (/proc/stat) to see how much that leaves out.
# A sub-make's lines are logged too, one level deeper (the top make's recipe lines are at level 1, the $(shell)
# calls it makes while reading its Makefile at level 0); the report's totals add up levels 0 and 1 only.
set -u

if [ "${1:-}" = "--report" ]; then
  file="${2:-${RECIPE_TIMES:-_build/recipe-times.tsv}}"
  [ -s "$file" ] || { echo "no recipe times in $file: run make with SHELL=$0 first" >&2; exit 2; }
  awk -F'\t' '
    { line[NR] = $0; start[NR] = $1 }
    END {
      first = start[1]; last = 0
      for (i = 1; i <= NR; i++) {
        split(line[i], f, "\t")
        if (f[1] < first) first = f[1]
        if (f[1] + f[2] > last) last = f[1] + f[2]
        if (f[6] <= 1) { wall += f[2]; cpu += f[3] + f[4]; n++ }
      }
      printf "%d recipe lines (%d outermost); %.1f s from the first start to the last end; " \
             "CPU of the outermost lines: %.1f s (their wall times add up to %.1f s)\n", NR, n, last - first, cpu, wall
    }' "$file"
  printf '%8s %8s %6s  %s\n' "CPU s" "wall s" "start" "command"
  first=$(cut -f1 "$file" | sort -g | head -1)
  awk -F'\t' -v first="$first" '{ printf "%8.1f %8.1f %6.0f  %s%s\n", $3 + $4, $2, $1 - first,
                                                   ($6 > 1 ? "  (sub-make) " : ""), substr($7, 1, 110) ($5 ? "  (exit status " $5 ")" : "") }' \
  "$file" | sort -gr
  exit 0
fi

log="${RECIPE_TIMES:-_build/recipe-times.tsv}"
start=$(date +%s.%N)
/bin/bash "$@"
status=$?
end=$(date +%s.%N)
# the user and system CPU time of the children this shell has waited for (bash above, and what it waited for):
# fields 16 and 17 of /proc/self/stat, in clock ticks (read here, not in a subshell, which has its own count)
read -r -a stat < "/proc/$$/stat"
ticks=$(getconf CLK_TCK)
user=$(awk -v t="${stat[15]}" -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }')
sys=$(awk -v t="${stat[16]}" -v hz="$ticks" 'BEGIN { printf "%.2f", t / hz }')
command=$(printf '%s' "${!#}" | tr '\t\n' '  ' | cut -c1-400)
mkdir -p "$(dirname "$log")"
printf '%s\t%.2f\t%s\t%s\t%s\t%s\t%s\n' "$start" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$user" "$sys" "$status" \
  "${MAKELEVEL:-0}" "$command" >> "$log"
exit "$status"
