/**
 * How a hit writes an output back (cache/outputs.ts): the bytes exactly, over a longer file too,
 * and the file's identity as the compiler would leave it — replaced, or written in place.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeOutputFile } from '../src/cache/outputs.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-outputs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('writeOutputFile', () => {
  it('in place: over a longer file leaves exactly the new bytes, same inode and mode', () => {
    const file = path.join(dir, 'a.d');
    fs.writeFileSync(file, 'x'.repeat(10_000), { mode: 0o640 });
    fs.chmodSync(file, 0o640);
    const before = fs.statSync(file);
    writeOutputFile(dir, 'a.d', Buffer.from('a.o: a.c\n'), { style: 'in-place', umask: 0o022 });
    const after = fs.statSync(file);
    expect(fs.readFileSync(file, 'utf8')).toBe('a.o: a.c\n');
    expect(after.ino).toBe(before.ino);
    expect(after.mode & 0o777).toBe(0o640);
  });

  it('in place: through a symlink, and a new file gets the umask', () => {
    fs.writeFileSync(path.join(dir, 'target.d'), 'old old old old\n');
    fs.symlinkSync('target.d', path.join(dir, 'link.d'));
    writeOutputFile(dir, 'link.d', Buffer.from('new\n'), { style: 'in-place', umask: 0o022 });
    expect(fs.lstatSync(path.join(dir, 'link.d')).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'target.d'), 'utf8')).toBe('new\n');
    writeOutputFile(dir, 'fresh.d', Buffer.from('f\n'), { style: 'in-place', umask: 0o027 });
    expect(fs.statSync(path.join(dir, 'fresh.d')).mode & 0o777).toBe(0o640);
  });

  it('in place: a device is written, never cut', () => {
    expect(() => writeOutputFile(dir, '/dev/null', Buffer.from('x'), { style: 'in-place' })).not.toThrow();
  });

  it('replace: a new file with exactly the new bytes; a symlink there is replaced, not followed; no temp file left', () => {
    const file = path.join(dir, 'b.o');
    fs.writeFileSync(file, Buffer.alloc(300_000, 1));
    const before = fs.statSync(file);
    writeOutputFile(dir, 'b.o', Buffer.from('object'), { umask: 0o022 });
    const after = fs.statSync(file);
    expect(fs.readFileSync(file, 'utf8')).toBe('object');
    expect(after.ino).not.toBe(before.ino);
    expect(after.mode & 0o777).toBe(0o644);

    fs.writeFileSync(path.join(dir, 'kept.o'), 'kept');
    fs.symlinkSync('kept.o', path.join(dir, 'c.o'));
    writeOutputFile(dir, 'c.o', Buffer.from('new object'), { umask: 0o022 });
    expect(fs.lstatSync(path.join(dir, 'c.o')).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'c.o'), 'utf8')).toBe('new object');
    expect(fs.readFileSync(path.join(dir, 'kept.o'), 'utf8')).toBe('kept');
    expect(fs.readdirSync(dir).filter((n) => n.includes('.kiln-'))).toEqual([]);
  });

  it('replace: a directory in the way is an error, and nothing is left behind', () => {
    fs.mkdirSync(path.join(dir, 'd.o'));
    expect(() => writeOutputFile(dir, 'd.o', Buffer.from('x'))).toThrow();
    expect(fs.statSync(path.join(dir, 'd.o')).isDirectory()).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.kiln-'))).toEqual([]);
  });
});
