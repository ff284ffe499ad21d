# Sourced: python313 prints a Python 3.13 that runs (the Lambda runtime's version, which
# `sam build` needs on PATH), or fails.
python313() {
  # A pyenv shim answers `command -v` but may not run: try each candidate for real.
  local root candidate
  root=$(pyenv root 2>/dev/null) || true
  for candidate in "$root"/versions/3.13*/bin/python3.13 $(command -v python3.13 2>/dev/null); do
    if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  return 1
}
