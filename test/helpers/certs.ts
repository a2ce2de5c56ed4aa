import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPki {
  /** PEM file of the self-signed CA that clients must trust. */
  caFile: string;
  /** Server certificate (SAN IP:127.0.0.1, DNS:localhost) signed by the CA. */
  certFile: string;
  keyFile: string;
  /** The same three as PEM text, for in-process servers and undici's `connect.ca`. */
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface SigningCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** DER of the certificate, base64 (standard alphabet), as JWS `x5c` wants it. */
  x5c: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

async function readText(file: string): Promise<string> {
  return readFile(file, 'utf8');
}

/**
 * A throw-away CA plus a loopback server certificate, made with the openssl CLI
 * (the registry is Go: it ignores the CN and insists on a subjectAltName).
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const caKey = path.join(dir, 'ca.key');
  const caFile = path.join(dir, 'ca.pem');
  const keyFile = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const certFile = path.join(dir, 'server.pem');
  const ext = path.join(dir, 'server.ext');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

  await openssl(['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '2',
    '-subj', '/CN=tarpush test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await openssl(['req', '-new', ...ec, '-keyout', keyFile, '-out', csr,
    '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(ext, [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  await openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey,
    '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', certFile], dir);

  return {
    caFile, certFile, keyFile,
    caPem: await readText(caFile),
    certPem: await readText(certFile),
    keyPem: await readText(keyFile),
  };
}

/**
 * A self-signed ECDSA P-256 certificate for signing registry tokens. It carries
 * no extended key usage on purpose: Go's chain verification, which the registry
 * uses on `x5c`, defaults to requiring serverAuth unless the leaf has no EKU.
 */
export async function makeSigningCert(dir: string): Promise<SigningCert> {
  const keyFile = path.join(dir, 'token-signing.key');
  const certFile = path.join(dir, 'token-signing.pem');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=tarpush test token signer'], dir);
  const certPem = await readText(certFile);
  const b64 = certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  return { certFile, keyFile, certPem, keyPem: await readText(keyFile), x5c: b64 };
}
