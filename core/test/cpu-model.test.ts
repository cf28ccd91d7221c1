import { describe, expect, it } from 'vitest';
import { cpuModelFromCpuinfo } from '../src/cluster/worker/cpu-model.js';

describe('cpuModelFromCpuinfo', () => {
  it('reads "model name" (x86_64), an Arm core by part (aarch64), and a board by name', () => {
    expect(cpuModelFromCpuinfo('processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n')).toBe(
      'Intel(R) Xeon(R) Processor',
    );
    const pi4 =
      'processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n';
    expect(cpuModelFromCpuinfo(pi4)).toBe('Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)');
    expect(cpuModelFromCpuinfo('CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n')).toBe('Neoverse-N1');
    expect(cpuModelFromCpuinfo('CPU implementer\t: 0x61\nCPU part\t: 0x022\n')).toBe('Arm part 0x022');
    expect(cpuModelFromCpuinfo('processor : 0\n')).toBeUndefined();
  });
});
