/**
 * The CPU model a worker reports. Node's `os.cpus()` says "unknown" on most aarch64 Linux machines
 * (their /proc/cpuinfo has no "model name"), which is where operators most want to tell a
 * Raspberry Pi from a Graviton: read /proc/cpuinfo ourselves then.
 */
import fs from 'node:fs';
import os from 'node:os';

/** Arm Ltd (implementer 0x41) cores by part number, the ones aarch64 workers are made of. */
const ARM_PARTS: Readonly<Record<string, string>> = {
  '0xd03': 'Cortex-A53',
  '0xd04': 'Cortex-A35',
  '0xd05': 'Cortex-A55',
  '0xd07': 'Cortex-A57',
  '0xd08': 'Cortex-A72',
  '0xd09': 'Cortex-A73',
  '0xd0a': 'Cortex-A75',
  '0xd0b': 'Cortex-A76',
  '0xd0c': 'Neoverse-N1',
  '0xd0d': 'Cortex-A77',
  '0xd40': 'Neoverse-V1',
  '0xd41': 'Cortex-A78',
  '0xd44': 'Cortex-X1',
  '0xd46': 'Cortex-A510',
  '0xd47': 'Cortex-A710',
  '0xd48': 'Cortex-X2',
  '0xd49': 'Neoverse-N2',
  '0xd4b': 'Cortex-A78C',
  '0xd4f': 'Neoverse-V2',
};

/**
 * The model from /proc/cpuinfo's text: "model name", else an Arm core by implementer and part
 * (with the board's "Model" when it names one, as a Raspberry Pi's does), else undefined.
 */
export function cpuModelFromCpuinfo(cpuinfo: string): string | undefined {
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm').exec(cpuinfo)?.[1]?.trim();
  const modelName = field('model name');
  if (modelName) return modelName;
  const part = field('CPU part')?.toLowerCase();
  const core = field('CPU implementer')?.toLowerCase() === '0x41' && part ? ARM_PARTS[part] : undefined;
  const board = field('Model');
  const named = core ?? (part ? `Arm part ${part}` : undefined);
  if (named && board) return `${named} (${board})`;
  return named ?? board;
}

export function cpuModel(): string {
  const fromNode = os.cpus()[0]?.model;
  if (fromNode && fromNode !== 'unknown') return fromNode;
  try {
    return cpuModelFromCpuinfo(fs.readFileSync('/proc/cpuinfo', 'utf8')) ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
