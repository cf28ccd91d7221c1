import fs from 'node:fs';
import { LOG_LEVELS, type LogLevel } from './config.js';

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

/** A line logger that appends to a file (the daemon has no terminal). Logging never throws. */
export function fileLogger(file: string, level: LogLevel): Logger {
  const max = LOG_LEVELS.indexOf(level);
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'a', 0o600);
  } catch {
    fd = undefined;
  }
  const write = (lvl: LogLevel) => (msg: string) => {
    if (fd === undefined || LOG_LEVELS.indexOf(lvl) > max) return;
    try {
      fs.writeSync(fd, `${new Date().toISOString()} ${process.pid} ${lvl} ${msg}\n`);
    } catch {
      // A full disk must not take the daemon down with it.
    }
  };
  return { error: write('error'), warn: write('warn'), info: write('info'), debug: write('debug') };
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };
