import { usageError } from '../errors.js';
import type { Platform } from './descriptor.js';

/** Parses `os/arch[/variant]` (and `os/arch/variant:osversion` is not supported on purpose). */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw usageError(`invalid platform "${text}": expected os/arch or os/arch/variant`);
  }
  return normalisePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', i386: '386' };

/** containerd's normalisation: aliases folded, arm64's default variant v8, arm's v7. */
export function normalisePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (architecture === 'arm' && !variant) variant = 'v7';
  if (variant && /^\d+$/.test(variant)) variant = `v${variant}`;
  const out: Platform = { os: p.os.toLowerCase(), architecture };
  if (variant) out.variant = variant;
  return out;
}

/** Does `have` satisfy what the user asked for (`want`)? */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  const w = normalisePlatform(want);
  const h = normalisePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return false;
  if (w.variant && w.variant !== h.variant) return false;
  return true;
}

export function formatPlatform(p: Platform | undefined): string {
  if (!p) return '';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}
