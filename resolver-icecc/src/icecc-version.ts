/**
 * icecream's ICECC_VERSION: `<native.tgz>,<platform>:<tgz>=<target>,…`. An entry without a
 * platform is for machines like this one; `=<target>` restricts an entry to compilers that
 * produce code for that target (cross compilers), e.g. `x86_64:/srv/arm.tgz=aarch64-linux-gnu`.
 */

export interface IceccEnvironment {
  /** The machine the tarball's compiler runs on, as kiln spells arches (x86_64, aarch64, …). */
  readonly arch: string;
  /** The platform as written (x86_64, i386, armv7l…), for messages. */
  readonly platform: string;
  readonly tarball: string;
  /** Only compilers whose target (or name) starts with this; absent: native compilers only. */
  readonly target?: string;
}

/** `uname -m` spellings (icecream's platforms) to the arch part of kiln's host triples. */
const ARCHES: Readonly<Record<string, string>> = {
  x86_64: 'x86_64',
  amd64: 'x86_64',
  i386: 'i686',
  i486: 'i686',
  i586: 'i686',
  i686: 'i686',
  aarch64: 'aarch64',
  arm64: 'aarch64',
  armv7l: 'armv7',
  armv7: 'armv7',
  armhf: 'armv7',
  riscv64: 'riscv64gc',
  riscv64gc: 'riscv64gc',
};

export function archOfPlatform(platform: string): string | undefined {
  return ARCHES[platform.toLowerCase()];
}

/**
 * Parses an ICECC_VERSION string; `nativeArch` is this machine's arch. Throws an Error naming the
 * part that is wrong: an unknown platform, a relative path, an empty item.
 */
export function parseIceccVersion(value: string, nativeArch: string): IceccEnvironment[] {
  return value.split(',').map((raw) => {
    const item = raw.trim();
    if (!item) throw new Error(`empty item in "${value}"`);
    const m = /^(?:([^/:=]+):)?(\/[^=]+)(?:=(.+))?$/.exec(item);
    if (!m) throw new Error(`"${item}": expected [<platform>:]</absolute/path.tar.gz>[=<target>]`);
    const [, platform, tarball, target] = m;
    const arch = platform ? archOfPlatform(platform) : nativeArch;
    if (!arch)
      throw new Error(`"${item}": unknown platform ${platform} (known: ${Object.keys(ARCHES).join(', ')})`);
    return { arch, platform: platform ?? nativeArch, tarball: tarball!, ...(target ? { target } : {}) };
  });
}

/** The environment for a compiler of `target` (its -dumpmachine) called `name`, if one fits. */
export function environmentFor(
  envs: readonly IceccEnvironment[],
  target: string,
  name: string,
  nativeArch: string,
): IceccEnvironment | undefined {
  const forTarget = envs.find(
    (e) => e.target !== undefined && (target.startsWith(e.target) || name.startsWith(`${e.target}-`)),
  );
  if (forTarget) return forTarget;
  // A native tarball never serves a cross compiler: its compiler would make code for the wrong machine.
  const targetArch = archOfPlatform(target.split('-')[0] ?? '') ?? target.split('-')[0];
  if (targetArch !== nativeArch) return undefined;
  return envs.find((e) => e.target === undefined);
}
