/** Phone numbers as the backend wants them: E.164 (`+`, country code, 8 to 15 digits in all). */

const E164 = /^\+[1-9][0-9]{7,14}$/
const SEPARATORS = /[\s\-().]/g

/** A phone number as the server stores it: spaces, dashes, dots and brackets removed. */
export function normalizePhone(raw: string): string {
  return raw.replace(SEPARATORS, '')
}

export function isE164(phone: string): boolean {
  return E164.test(phone)
}
